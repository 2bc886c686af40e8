module zpoline.test/goroutines

go 1.19
