package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
)

// idleRig is scenario 5: the heap and goroutines that n idle open streams
// cost, both ends together. One op connects, measures, opens n streams
// (with traffic, each then carries a few bytes each way and is idle again),
// measures again, and closes the connection. Raw TCP is left out: its cost
// is in the kernel, and 2n descriptors exceed the usual limits.
type idleRig struct {
	im      impl
	n       int
	traffic bool
	cli     []net.Conn
	srv     []net.Conn
	bytes   []float64 // per op: heap bytes per stream
	gs      []float64 // per op: goroutines per stream
}

// idleMsg is how many bytes each stream carries each way with traffic.
const idleMsg = 16

func newIdleRig(im impl, n int, traffic bool) *idleRig {
	return &idleRig{im: im, n: n, traffic: traffic, cli: make([]net.Conn, n), srv: make([]net.Conn, n)}
}

// heapNow returns the live heap after collecting twice (the second
// collection also empties sync.Pool victim caches).
func heapNow() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func (g *idleRig) op() (err error) {
	ep, err := g.im.connect(nil, options{streams: g.n})
	if err != nil {
		return err
	}
	wd := startWatchdog(stallLimit, ep)
	defer func() {
		wd.stop()
		if cerr := ep.close(); err == nil {
			err = cerr
		}
		clear(g.cli)
		clear(g.srv)
	}()

	h0, g0 := heapNow(), runtime.NumGoroutine()

	accepted := make(chan error, 1)
	go func() {
		for j := range g.n {
			s, err := ep.srv.accept()
			if err != nil {
				accepted <- fmt.Errorf("accept %d: %w", j, err)
				return
			}
			g.srv[j] = s
		}
		accepted <- nil
	}()
	for i := range g.n {
		c, err := ep.cli.open(context.Background())
		if err != nil {
			ep.close()
			<-accepted
			return wd.check(fmt.Errorf("open %d: %w", i, err))
		}
		g.cli[i] = c
	}
	if err := <-accepted; err != nil {
		return wd.check(err)
	}
	if g.traffic {
		if err := g.exchange(); err != nil {
			ep.close()
			return wd.check(err)
		}
	}

	h1, g1 := heapNow(), runtime.NumGoroutine()
	g.bytes = append(g.bytes, (float64(h1)-float64(h0))/float64(g.n))
	g.gs = append(g.gs, float64(g1-g0)/float64(g.n))
	wd.tick()
	return nil
}

// exchange sends idleMsg bytes each way on every stream: all clients
// write, then every server end echoes, then all clients read, a few
// streams at a time (no assumption about which accepted stream is which).
func (g *idleRig) exchange() error {
	phases := []func(i int, buf []byte) error{
		func(i int, buf []byte) error { _, err := g.cli[i].Write(buf); return err },
		func(i int, buf []byte) error {
			if _, err := io.ReadFull(g.srv[i], buf); err != nil {
				return err
			}
			_, err := g.srv[i].Write(buf)
			return err
		},
		func(i int, buf []byte) error { _, err := io.ReadFull(g.cli[i], buf); return err },
	}
	const workers = 16
	for _, phase := range phases {
		var wg sync.WaitGroup
		var errs errOnce
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, idleMsg)
				for i := w; i < g.n; i += workers {
					if err := phase(i, buf); err != nil {
						errs.set(fmt.Errorf("stream %d: %w", i, err))
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := errs.get(); err != nil {
			return err
		}
	}
	return nil
}
