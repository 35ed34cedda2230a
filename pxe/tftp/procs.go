package tftp

import (
	"runtime"
	"sync"
)

// procs keeps a P (GOMAXPROCS) for each lock-step transfer that waits
// on a thread of its own, blocked in recv(2). A goroutine in a system
// call keeps its P while Ps are idle, and returns from the call to run
// on it at once. With fewer Ps than such threads, a thread woken by its
// ACK finds no P, queues its goroutine and sleeps until the runtime's
// monitor takes a P from a thread that is still blocked, up to 20 µs
// and two thread switches later: each block of each transfer waits for
// that (measured: 0.63x tftpd-hpa at 32 clients with GOMAXPROCS 2).
// So the server raises GOMAXPROCS while such transfers run, in steps of
// procStep, and puts it back when the last one ends; the Ps of threads
// blocked in system calls run no Go code, so the raise adds no
// parallelism beyond the threads' own.
type procs struct {
	mu   sync.Mutex
	n    int // threads counted
	base int // GOMAXPROCS when the first was counted
	set  int // GOMAXPROCS as last set here; 0: not raised
}

const procStep = 4

// add counts d more (or, negative, fewer) threads.
func (p *procs) add(d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.addLocked(d)
}

func (p *procs) addLocked(d int) {
	if p.n == 0 && d > 0 {
		p.base, p.set = runtime.GOMAXPROCS(0), 0
	}
	p.n += d
	switch cur := runtime.GOMAXPROCS(0); {
	case p.n == 0:
		if p.set != 0 && cur == p.set { // nobody else changed it since
			runtime.GOMAXPROCS(p.base)
		}
		p.set = 0
	case p.base+p.n > cur:
		p.set = p.base + (p.n+procStep-1)/procStep*procStep
		runtime.GOMAXPROCS(p.set)
	}
}

// take counts one more thread unless max are counted already.
func (p *procs) take(max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= max {
		return false
	}
	p.addLocked(1)
	return true
}

// yieldBelow is how many lock-step threads may run before their
// goroutines stop yielding (see blockingLink.recv).
const yieldBelow = 16

// few reports whether fewer than yieldBelow threads are counted.
func (p *procs) few() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n < yieldBelow
}
