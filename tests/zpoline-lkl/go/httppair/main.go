// An HTTP server and a client in one static Go program: under lkl-run --zpoline (LKL
// backend) both ends are LKL sockets on LKL's loopback, driven by Go's netpoller
// (epoll) from many goroutines and threads.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	body := strings.Repeat("lkl", 10000)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	url := "http://" + ln.Addr().String() + "/"
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				resp, err := http.Get(url)
				if err != nil {
					fmt.Println("get:", err)
					os.Exit(1)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != body {
					fmt.Println("body:", err, len(b))
					os.Exit(1)
				}
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Println("http ok", got)
}
