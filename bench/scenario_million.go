package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// millionRig is scenario 11: up to a million idle streams in one process,
// spread evenly over a few sessions (each a muxer over one loopback TCP
// connection). One op connects the sessions, measures, then opens streams
// in steps (10k, 100k, 1M in all by default), every session opening its
// share while its peer accepts, and measures the live heap (after two
// collections, both ends) at each step. The streams carry nothing.
// Raw TCP is left out: a million streams would be two million descriptors.
//
// Limits: each session holds steps[last]/sessions streams opened by its
// peer, so the adapters raise what refuses that many (ours:
// MaxIncomingStreams, and MaxReceiveBuffer to two initial windows per
// stream, an accounting budget, not memory; libp2p: MaxIncomingStreams).
// hashicorp and smux have no stream limit.
type millionRig struct {
	im       muxImpl
	sessions int
	steps    []int // total streams after each step, increasing, each a multiple of sessions

	perStream [][]float64 // per op, per step: heap bytes per stream
	slope     []float64   // per op: extra bytes per extra stream between the last two steps
	rate      []float64   // per op: streams opened and accepted per second, all steps
}

func newMillionRig(im muxImpl, sessions int, steps []int) (*millionRig, error) {
	for i, s := range steps {
		if s%sessions != 0 || (i > 0 && s <= steps[i-1]) {
			return nil, fmt.Errorf("bench: million steps %v: want increasing multiples of %d", steps, sessions)
		}
	}
	return &millionRig{im: im, sessions: sessions, steps: steps}, nil
}

func (g *millionRig) op() (err error) {
	per := g.steps[len(g.steps)-1] / g.sessions
	o := options{streams: per}
	eps := make([]*endpoints, 0, g.sessions)
	cli := make([][]net.Conn, g.sessions) // preallocated: not counted
	srv := make([][]net.Conn, g.sessions)
	for i := range g.sessions {
		cli[i], srv[i] = make([]net.Conn, per), make([]net.Conn, per)
	}
	closers := make([]io.Closer, 0, g.sessions) // for the watchdog
	defer func() {
		for _, ep := range eps {
			if cerr := ep.close(); err == nil {
				err = cerr
			}
		}
	}()
	for range g.sessions {
		ep, err := g.im.connect(nil, o)
		if err != nil {
			return err
		}
		eps = append(eps, ep)
		closers = append(closers, ep)
	}
	wd := startWatchdog(stallLimit, closers...)
	defer wd.stop()

	b0 := memInUse().total()
	var perStep []float64
	var opening time.Duration
	var heaps []float64
	have := 0
	for _, step := range g.steps {
		upto := step / g.sessions
		t0 := time.Now()
		if err := g.openStep(eps, cli, srv, have, upto, wd.tick); err != nil {
			return wd.check(err)
		}
		opening += time.Since(t0)
		have = upto
		b := memInUse().total()
		heaps = append(heaps, b)
		perStep = append(perStep, (b-b0)/float64(step))
	}
	g.perStream = append(g.perStream, perStep)
	if n := len(g.steps); n >= 2 {
		g.slope = append(g.slope, (heaps[n-1]-heaps[n-2])/float64(g.steps[n-1]-g.steps[n-2]))
	}
	g.rate = append(g.rate, float64(g.steps[len(g.steps)-1])/opening.Seconds())
	wd.tick()
	return nil
}

// openStep has every session open streams from..upto-1 while its peer
// accepts as many, all sessions at once.
func (g *millionRig) openStep(eps []*endpoints, cli, srv [][]net.Conn, from, upto int, tick func()) error {
	var errs errOnce
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := from; j < upto; j++ {
				st, err := ep.srv.accept()
				if err != nil {
					errs.set(fmt.Errorf("session %d: accept %d: %w", i, j, err))
					return
				}
				srv[i][j] = st
				if j%1024 == 0 {
					tick()
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := from; j < upto; j++ {
				st, err := ep.cli.open(context.Background())
				if err != nil {
					errs.set(fmt.Errorf("session %d: open %d: %w", i, j, err))
					ep.close() // the acceptor waits for no more
					return
				}
				cli[i][j] = st
			}
		}()
	}
	wg.Wait()
	return errs.get()
}
