package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// lfnRig is scenario 7: one stream over an emulated long fat link (see
// latency.go), the client writing as fast as the stream lets it. One op
// makes a fresh connection and stream (so flow-control windows start from
// their defaults), counts the bytes the server read within dur of the
// stream's start, and tears everything down. Raw TCP runs over the same
// emulation; the emulation is above TCP, so TCP's own congestion control
// never sees the delay and raw TCP shows what the link itself allows.
type lfnRig struct {
	im    impl
	link  linkConfig
	dur   time.Duration
	chunk []byte
	mbps  []float64 // per op
}

func newLFNRig(im impl, link linkConfig, dur time.Duration) *lfnRig {
	return &lfnRig{im: im, link: link, dur: dur, chunk: fill(256 << 10)}
}

func (g *lfnRig) op() error {
	ep, err := g.im.connect(g.link.wrap(), options{streams: 1})
	if err != nil {
		return err
	}
	c, s, err := streamPair(ep)
	if err != nil {
		ep.close()
		return err
	}
	var received atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(g.chunk); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for {
			n, err := s.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	start := time.Now()
	t := time.NewTimer(g.dur)
	<-t.C
	// A short op on a loaded machine (the smoke test's 200 ms under -race)
	// may end before the first byte arrives: wait for it, up to 10 s, and
	// count the time waited.
	for received.Load() == 0 && time.Since(start) < g.dur+10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	n, elapsed := received.Load(), time.Since(start)
	close(stop)
	err = ep.close() // unblocks the writer and the reader
	wg.Wait()
	closeAll(c, s)
	g.mbps = append(g.mbps, float64(n)/elapsed.Seconds()/1e6)
	return err
}
