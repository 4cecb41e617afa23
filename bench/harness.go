package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// watchdog closes what a rig uses when no operation has completed for a
// whole period, so that a stuck implementation fails its benchmark or test
// instead of hanging it. It costs nothing per operation beyond an atomic add.
type watchdog struct {
	limit    time.Duration
	progress atomic.Uint64
	fired    atomic.Bool
	stopCh   chan struct{}
	done     chan struct{}
}

func startWatchdog(limit time.Duration, closers ...io.Closer) *watchdog {
	w := &watchdog{limit: limit, stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(limit)
		defer t.Stop()
		last := w.progress.Load()
		for {
			select {
			case <-w.stopCh:
				return
			case <-t.C:
			}
			if p := w.progress.Load(); p != last {
				last = p
				continue
			}
			w.fired.Store(true)
			for _, c := range closers {
				c.Close()
			}
			return
		}
	}()
	return w
}

// tick records that an operation completed.
func (w *watchdog) tick() { w.progress.Add(1) }

// stop ends the watchdog and waits for it.
func (w *watchdog) stop() {
	close(w.stopCh)
	<-w.done
}

// check wraps err with the reason when the watchdog fired.
func (w *watchdog) check(err error) error {
	if err != nil && w.fired.Load() {
		return fmt.Errorf("no progress for %v, closed everything: %w", w.limit, err)
	}
	return err
}

// stallLimit is how long a rig may make no progress: longer than any single
// operation of the default benchmark configuration.
var stallLimit = 3 * time.Minute

// envInt returns the integer environment variable name, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// sizeName formats a byte count the way sub-benchmark names use it.
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// percentile returns the p-th percentile (0..100, nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// spread returns p90/p10 of ds (sorted in place), the fairness metric.
func spread(ds []time.Duration) float64 {
	slices.Sort(ds)
	p10 := percentile(ds, 10)
	if p10 <= 0 {
		return math.NaN()
	}
	return float64(percentile(ds, 90)) / float64(p10)
}

// errOnce keeps the first error reported by any goroutine.
type errOnce struct {
	mu  sync.Mutex
	err error
}

func (e *errOnce) set(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *errOnce) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// fill returns n bytes of a fixed pattern (not zeros, in case anything
// compresses or special-cases them).
func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// readN reads exactly n bytes from r into buf (reused) and discards them.
func readN(r io.Reader, buf []byte, n int64) error {
	for n > 0 {
		m, err := r.Read(buf[:min(int64(len(buf)), n)])
		n -= int64(m)
		if err != nil {
			if n > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n == 0 {
				return nil
			}
			return err
		}
	}
	return nil
}

// writeN writes n bytes to w in writes of len(buf) (the last one shorter).
func writeN(w io.Writer, buf []byte, n int64) error {
	for n > 0 {
		m := min(int64(len(buf)), n)
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// streamPair opens one stream on ep.cli and accepts it on ep.srv. On
// error the caller must still close ep.
func streamPair(ep *endpoints) (client, server net.Conn, err error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ep.srv.accept()
		ch <- result{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), pairTimeout)
	defer cancel()
	client, err = ep.cli.open(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open: %w", err)
	}
	t := time.NewTimer(pairTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			client.Close()
			return nil, nil, fmt.Errorf("accept: %w", r.err)
		}
		return client, r.c, nil
	case <-t.C:
		client.Close()
		return nil, nil, fmt.Errorf("accept: no stream after %v", pairTimeout)
	}
}

const pairTimeout = 10 * time.Second

// closeAll closes every non-nil closer, ignoring errors: it tears down
// after a failure.
func closeAll(cs ...io.Closer) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}
