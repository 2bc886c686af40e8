// Goroutines that grow their stacks by recursion while making syscalls, then an
// os/exec of /bin/true: under lkl-run --zpoline every syscall of it is interposed.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// deep recurses n levels with a frame big enough to make the runtime grow the
// goroutine's stack several times, and makes a syscall at the bottom.
func deep(n int) int {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n == 0 {
		return os.Getppid() + int(pad[0])
	}
	return deep(n-1) + int(pad[n%256]&1)
}

func main() {
	var wg sync.WaitGroup
	sums := make([]int, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			// Every depth: the syscall at the bottom runs with every amount of
			// room left on the goroutine's stack.
			for d := 0; d < 1200; d += 3 + g {
				sums[g] += deep(d)
			}
			for i := 0; i < 20; i++ {
				// A hooked call (mmap/munmap through the Go runtime is rarer): a
				// pipe and its close.
				r, w, err := os.Pipe()
				if err != nil {
					panic(err)
				}
				r.Close()
				w.Close()
			}
		}(g)
	}
	wg.Wait()
	for i := 0; i < 3; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			fmt.Println("exec failed:", err)
			os.Exit(1)
		}
	}
	fmt.Println("goroutines ok", len(sums))
}
