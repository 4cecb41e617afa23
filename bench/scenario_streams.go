package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// streamsRig is scenario 2: n streams at once, each carrying a seeded
// random size between minSize and maxSize from client to server in 32 KiB
// writes. One op opens all n streams, releases all writers at once, and
// waits until every reader saw EOF.
//
// Fairness: a stream's completion time depends on its size, so p90/p10 of
// completion times is about 1.9 even for a perfectly fair muxer with sizes
// uniform in 1..4 MiB. The fairness metric is therefore p90/p10 of the
// times at which each stream delivered its first mark bytes (1 MiB, the
// part every stream has): all streams compete for the whole of that phase,
// so a fair muxer gives a ratio near 1. The raw completion-time ratio is
// reported too, as done-p90/p10.
type streamsRig struct {
	ep     *endpoints
	n      int
	sizes  []int64
	total  int64
	mark   int64
	chunk  []byte
	rbufs  [][]byte
	conns  []net.Conn
	first  []time.Time
	done   []time.Time
	got    []int64
	wd     *watchdog
	fair   []float64 // per op
	doneSp []float64 // per op
}

const streamsChunk = 32 << 10

func newStreamsRig(im impl, n int, minSize, maxSize int64, seed uint64) (*streamsRig, error) {
	ep, err := im.connect(nil, options{streams: n})
	if err != nil {
		return nil, err
	}
	g := &streamsRig{
		ep: ep, n: n, mark: minSize,
		chunk: fill(streamsChunk),
		rbufs: make([][]byte, n),
		conns: make([]net.Conn, n),
		first: make([]time.Time, n),
		done:  make([]time.Time, n),
		got:   make([]int64, n),
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range n {
		s := minSize + rng.Int64N(maxSize-minSize+1)
		g.sizes = append(g.sizes, s)
		g.total += s
		g.rbufs[i] = make([]byte, streamsChunk)
	}
	g.wd = startWatchdog(stallLimit, ep)
	return g, nil
}

func (g *streamsRig) op() error {
	var errs errOnce
	fail := func(err error) {
		errs.set(err)
		g.ep.close() // unblocks everyone; the rig is dead
	}
	clear(g.first)
	clear(g.done)
	clear(g.got)

	// Server: accept n streams, one reader each.
	var acceptor sync.WaitGroup
	acceptor.Add(1)
	go func() {
		defer acceptor.Done()
		var readers sync.WaitGroup
		defer readers.Wait()
		for j := range g.n {
			s, err := g.ep.srv.accept()
			if err != nil {
				fail(fmt.Errorf("accept %d: %w", j, err))
				return
			}
			readers.Add(1)
			go func() {
				defer readers.Done()
				defer s.Close()
				buf, count := g.rbufs[j], int64(0)
				for {
					m, err := s.Read(buf)
					count += int64(m)
					if count >= g.mark && g.first[j].IsZero() {
						g.first[j] = time.Now()
					}
					if err == io.EOF {
						g.done[j], g.got[j] = time.Now(), count
						return
					}
					if err != nil {
						fail(fmt.Errorf("read: %w", err))
						return
					}
				}
			}()
		}
	}()

	// Client: open all streams, then release all writers at once.
	start := make(chan struct{})
	var writers sync.WaitGroup
	for i := range g.n {
		c, err := g.ep.cli.open(context.Background())
		if err != nil {
			fail(fmt.Errorf("open %d: %w", i, err))
			break
		}
		g.conns[i] = c
		writers.Add(1)
		go func() {
			defer writers.Done()
			defer c.Close()
			<-start
			if err := writeN(c, g.chunk, g.sizes[i]); err != nil {
				fail(fmt.Errorf("write: %w", err))
			}
		}()
	}
	t0 := time.Now()
	close(start)
	writers.Wait()
	acceptor.Wait()
	clear(g.conns)
	g.wd.tick()
	if err := errs.get(); err != nil {
		return g.wd.check(err)
	}

	var sum int64
	firsts := make([]time.Duration, g.n)
	dones := make([]time.Duration, g.n)
	for j := range g.n {
		sum += g.got[j]
		firsts[j] = g.first[j].Sub(t0)
		dones[j] = g.done[j].Sub(t0)
	}
	if sum != g.total {
		return fmt.Errorf("received %d bytes, sent %d", sum, g.total)
	}
	g.fair = append(g.fair, spread(firsts))
	g.doneSp = append(g.doneSp, spread(dones))
	return nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func (g *streamsRig) close() error {
	g.wd.stop()
	return g.ep.close()
}
