package bench

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// lowRateRig is scenario 12: the pairs of scenario 9 (farmStreams streams
// each, after their setup exchange), all active at a low rate: every
// stream makes a 1 KiB request, answered with 1 KiB, every period, the
// streams' start times spread evenly over the first period. One op is d of
// that traffic. Each stream has a goroutine at each end (the client one
// sleeps between requests; the server one reads and answers), as an
// application written the usual Go way would. The metrics are the
// requests' latency (from the request's Write to the last byte of its
// answer) and the process's CPU time (user + system, both ends and the
// benchmark's own goroutines) per request over the traffic phase.
type lowRateRig struct {
	im     impl
	n      int
	d      time.Duration
	period time.Duration
	stop   <-chan struct{}   // if not nil, closing it ends the traffic early
	count  func(calls int64) // if not nil, called after each request

	p50, p99  []float64 // per op, µs
	cpuPerReq []float64 // per op, µs of CPU per request
	rate      []float64 // per op, requests completed per second
	calls     []int64   // per op, requests completed
	elapsed   []time.Duration
}

// lowRateMsg is the request and the answer size.
const lowRateMsg = 1 << 10

func newLowRateRig(im impl, n int, d, period time.Duration) *lowRateRig {
	return &lowRateRig{im: im, n: capPairs(im, n, farmStreams), d: d, period: period}
}

func (g *lowRateRig) op() (err error) {
	f, wd, _, err := startFarm(g.im, g.n)
	if err != nil {
		return err
	}
	defer stopFarm(f, wd, &err)
	// Servers: read a request, answer it, until the stream fails (at
	// teardown).
	var srvWG sync.WaitGroup
	resp := fill(lowRateMsg) // only read, by every server
	for i := range f.pairs {
		for _, st := range f.pairs[i].srv {
			srvWG.Add(1)
			go func() {
				defer srvWG.Done()
				req := make([]byte, lowRateMsg)
				for {
					if _, err := io.ReadFull(st, req); err != nil {
						return
					}
					if _, err := st.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}
	defer func() {
		f.close() // ends the servers; the first defer gets the same result
		srvWG.Wait()
	}()

	total := g.n * farmStreams
	lats := make([][]time.Duration, total)
	perStream := int(g.d/g.period) + 1
	var failed atomic.Bool
	var errs errOnce
	var cliWG sync.WaitGroup
	req := fill(lowRateMsg) // only read, by every client
	// Every client goroutine exists before the clock starts, so that
	// starting tens of thousands of them does not delay the first requests.
	start := make(chan struct{})
	var t0, end time.Time // written before start is closed
	for i := range f.pairs {
		for j, st := range f.pairs[i].cli {
			k := i*farmStreams + j
			lats[k] = make([]time.Duration, 0, perStream)
			offset := time.Duration(int64(g.period) * int64(k) / int64(total))
			cliWG.Add(1)
			go func() {
				defer cliWG.Done()
				buf := make([]byte, lowRateMsg)
				<-start
				next := t0.Add(offset)
				t := time.NewTimer(time.Hour) // reset before each request
				defer t.Stop()
				for ; next.Before(end) && !failed.Load(); next = next.Add(g.period) {
					t.Reset(time.Until(next))
					select {
					case <-t.C:
					case <-g.stop:
						return
					}
					sent := time.Now()
					_, err := st.Write(req)
					if err == nil {
						_, err = io.ReadFull(st, buf)
					}
					if err != nil {
						errs.set(fmt.Errorf("pair %d stream %d: %w", k/farmStreams, k%farmStreams, err))
						failed.Store(true)
						return
					}
					lats[k] = append(lats[k], time.Since(sent))
					wd.tick()
					if g.count != nil {
						g.count(1)
					}
				}
			}()
		}
	}
	cpu0 := processCPU()
	t0 = time.Now()
	end = t0.Add(g.d)
	close(start)
	cliWG.Wait()
	elapsed, cpu := time.Since(t0), processCPU()-cpu0
	if err := errs.get(); err != nil {
		return wd.check(err)
	}
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return fmt.Errorf("no request completed in %v", g.d)
	}
	slices.Sort(all)
	g.p50 = append(g.p50, float64(percentile(all, 50))/1e3)
	g.p99 = append(g.p99, float64(percentile(all, 99))/1e3)
	g.cpuPerReq = append(g.cpuPerReq, float64(cpu)/1e3/float64(len(all)))
	g.rate = append(g.rate, float64(len(all))/elapsed.Seconds())
	g.calls = append(g.calls, int64(len(all)))
	g.elapsed = append(g.elapsed, elapsed)
	return nil
}
