module zpoline.test/httppair

go 1.19
