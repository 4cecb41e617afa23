package bench

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// callPool runs timed calls for a rig: one at a time from op's goroutine
// (conc 1) or handed to conc worker goroutines, each with its own state W
// and latencies. The first error is kept and stops later calls. The rig
// owns the pool; finish ends its workers.
type callPool[W any] struct {
	call     func(*W) error // one call with the worker's state
	wd       *watchdog
	workers  []*W
	lat      [][]time.Duration // lat[i]: worker i's latencies
	jobs     chan struct{}     // nil for conc 1
	workerWG sync.WaitGroup
	errs     errOnce
	failed   atomic.Bool
}

// newCallPool starts conc workers (none for conc 1), each with the state
// newWorker makes.
func newCallPool[W any](conc int, wd *watchdog, newWorker func() *W, call func(*W) error) *callPool[W] {
	p := &callPool[W]{call: call, wd: wd, lat: make([][]time.Duration, conc)}
	for range conc {
		p.workers = append(p.workers, newWorker())
	}
	if conc > 1 {
		jobs := make(chan struct{})
		p.jobs = jobs
		for i := range p.workers {
			p.workerWG.Add(1)
			go func() {
				defer p.workerWG.Done()
				for range jobs {
					if !p.failed.Load() {
						p.run(i)
					}
				}
			}()
		}
	}
	return p
}

// run does one timed call on worker i.
func (p *callPool[W]) run(i int) {
	t := time.Now()
	err := p.call(p.workers[i])
	p.lat[i] = append(p.lat[i], time.Since(t))
	if err != nil {
		p.errs.set(err)
		p.failed.Store(true)
	}
	p.wd.tick()
}

// op does (conc 1) or hands to a worker (conc > 1) one call.
func (p *callPool[W]) op() error {
	if p.failed.Load() {
		return p.wd.check(p.errs.get())
	}
	if p.jobs == nil {
		p.run(0)
	} else {
		p.jobs <- struct{}{}
	}
	return nil
}

// finish waits for the calls in flight and returns the first error.
func (p *callPool[W]) finish() error {
	if p.jobs != nil {
		close(p.jobs)
		p.jobs = nil
		p.workerWG.Wait()
	}
	return p.wd.check(p.errs.get())
}

// latencies returns every call's latency, sorted. Call after finish.
func (p *callPool[W]) latencies() []time.Duration {
	var all []time.Duration
	for _, l := range p.lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return all
}
