package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// This file is scenarios 9 and 10 ("sessions at scale"): many session
// pairs in one process, each with a few streams that carried one small
// exchange and are then idle (idleSessionsRig), and the same after each
// pair moved a few MiB (busyThenIdleRig). Scenario 12 (scenario_lowrate.go)
// starts from the same farm.

const (
	// farmStreams is the streams per session pair.
	farmStreams = 10
	// farmMsg is what each stream carries each way while it is set up: its
	// pair and stream index, so that the server end learns which client
	// stream it holds (no assumption about accept order).
	farmMsg = 16
	// farmWorkers set pairs up (and tear them down) at once. Each has its
	// own listener, and dials it one connection at a time, so the
	// connection it accepts is the one it dialed.
	farmWorkers = 8
	// fdReserve is descriptors left for everything but the pairs (stdio,
	// the poller, the listeners).
	fdReserve = 100
	// fallbackFDLimit is assumed where the limit cannot be read.
	fallbackFDLimit = 1024
)

// fdsPerPair is how many descriptors one pair of im holds: a connection's
// two ends, or for raw TCP, one connection per stream.
func fdsPerPair(im impl, streams int) int {
	if _, ok := im.(rawTCP); ok {
		return 2 * streams
	}
	return 2
}

// capPairs raises the descriptor limit (soft to hard) and returns how many
// pairs of im fit under it, at most want.
func capPairs(im impl, want, streams int) int {
	fit := (raiseFDLimit() - fdReserve) / fdsPerPair(im, streams)
	return max(1, min(want, fit))
}

// farm is n session pairs over loopback TCP in this process, each with k
// streams that carried farmMsg bytes each way. For a muxer a pair is one
// connection with a client and a server session; for raw TCP it is k
// connections (one per stream) and no session. All bookkeeping is
// allocated in newFarm, before a scenario takes its baseline, so that what
// it measures per pair is the implementations' and the sockets' own.
type farm struct {
	im    impl
	k     int
	pairs []farmPair
	eps   []endpoints    // muxers: pairs[i].ep is &eps[i]
	lns   []net.Listener // one per worker

	// sessionTime is the time to dial every pair's connection and start
	// both sessions; streamTime to open, accept and exchange every pair's
	// streams (raw TCP: dial and accept every connection, and exchange).
	sessionTime, streamTime time.Duration

	mu     sync.Mutex // guards conns and closed; the watchdog closes them
	conns  []net.Conn // every TCP end, to cut when stuck; capacity preallocated
	closed bool
}

// farmPair is one pair: srv[j] is the other end of cli[j].
type farmPair struct {
	ep       *endpoints // nil for raw TCP
	cli, srv []net.Conn
}

func newFarm(im impl, n, k int) (*farm, error) {
	f := &farm{im: im, k: k, pairs: make([]farmPair, n)}
	if _, ok := im.(rawTCP); !ok {
		f.eps = make([]endpoints, n)
	}
	streams := make([]net.Conn, 2*n*k)
	for i := range f.pairs {
		f.pairs[i].cli = streams[2*i*k : (2*i+1)*k : (2*i+1)*k]
		f.pairs[i].srv = streams[(2*i+1)*k : (2*i+2)*k : (2*i+2)*k]
	}
	f.conns = make([]net.Conn, 0, n*fdsPerPair(im, k))
	for range farmWorkers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, err
		}
		f.lns = append(f.lns, ln)
	}
	return f, nil
}

// Close cuts every TCP connection and listener, which fails every blocked
// call of the sessions over them: what the watchdog does when the farm is
// stuck. The sessions themselves are closed by close.
func (f *farm) Close() error {
	f.mu.Lock()
	f.closed = true
	conns := f.conns
	f.mu.Unlock()
	for _, ln := range f.lns {
		ln.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// track registers both ends of a new connection; false (and both closed)
// once the farm is closed.
func (f *farm) track(c, s net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		s.Close()
		return false
	}
	f.conns = append(f.conns, c, s)
	return true
}

// dialOn returns both ends of a new connection to ln, which only the
// calling worker dials.
func (f *farm) dialOn(ln net.Listener) (client, server net.Conn, err error) {
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	if !f.track(client, server) {
		return nil, nil, net.ErrClosed
	}
	return client, server, nil
}

// parallel runs fn for every pair index on farmWorkers goroutines (worker
// w passes its listener), stopping at the first error, and returns it.
// tick, if not nil, is called after each pair.
func (f *farm) parallel(fn func(ln net.Listener, i int) error, tick func()) error {
	var next atomic.Int64
	var failed atomic.Bool
	var errs errOnce
	var wg sync.WaitGroup
	for w := range farmWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(f.pairs) {
					return
				}
				if err := fn(f.lns[w], i); err != nil {
					errs.set(fmt.Errorf("pair %d: %w", i, err))
					failed.Store(true)
					return
				}
				if tick != nil {
					tick()
				}
			}
		}()
	}
	wg.Wait()
	return errs.get()
}

// setup connects every pair and then sets up its streams, timing the two
// phases separately (raw TCP has no session phase: sessionTime stays 0).
func (f *farm) setup(tick func()) error {
	if m, ok := f.im.(muxImpl); ok {
		t0 := time.Now()
		err := f.parallel(func(ln net.Listener, i int) error { return f.connectPair(m, ln, i) }, tick)
		if err != nil {
			return err
		}
		f.sessionTime = time.Since(t0)
	}
	t1 := time.Now()
	if err := f.parallel(f.streamsOf, tick); err != nil {
		return err
	}
	f.streamTime = time.Since(t1)
	return nil
}

// connectPair dials pair i's connection and starts both sessions.
func (f *farm) connectPair(m muxImpl, ln net.Listener, i int) error {
	c, s, err := f.dialOn(ln)
	if err != nil {
		return err
	}
	o := options{streams: f.k}
	cli, err := m.client(c, o)
	if err != nil {
		return fmt.Errorf("%s client: %w", m.name(), err)
	}
	srv, err := m.server(s, o)
	if err != nil {
		cli.close()
		return fmt.Errorf("%s server: %w", m.name(), err)
	}
	ep := &f.eps[i]
	ep.cli, ep.srv = cli, srv
	f.pairs[i].ep = ep
	return nil
}

// streamsOf sets up pair i's streams: opens them all (each writes its
// index), accepts them all (each read, filed under its index and echoed),
// then reads every echo. Raw TCP dials a connection per stream instead.
func (f *farm) streamsOf(ln net.Listener, i int) error {
	p := &f.pairs[i]
	var msg [farmMsg]byte
	binary.BigEndian.PutUint64(msg[:8], uint64(i))
	if p.ep == nil { // raw TCP
		for j := range f.k {
			c, s, err := f.dialOn(ln)
			if err != nil {
				return fmt.Errorf("dial %d: %w", j, err)
			}
			p.cli[j], p.srv[j] = c, s
		}
	} else {
		for j := range f.k {
			st, err := p.ep.cli.open(context.Background())
			if err != nil {
				return fmt.Errorf("open %d: %w", j, err)
			}
			p.cli[j] = st
		}
	}
	for j, st := range p.cli {
		binary.BigEndian.PutUint64(msg[8:], uint64(j))
		if _, err := st.Write(msg[:]); err != nil {
			return fmt.Errorf("stream %d: write: %w", j, err)
		}
	}
	for j := range f.k {
		st := p.srv[j]
		if p.ep != nil {
			var err error
			if st, err = p.ep.srv.accept(); err != nil {
				return fmt.Errorf("accept %d: %w", j, err)
			}
		}
		if _, err := io.ReadFull(st, msg[:]); err != nil {
			st.Close()
			return fmt.Errorf("accepted stream %d: read: %w", j, err)
		}
		pi, sj := binary.BigEndian.Uint64(msg[:8]), binary.BigEndian.Uint64(msg[8:])
		if pi != uint64(i) || sj >= uint64(f.k) || (p.srv[sj] != nil && p.srv[sj] != st) {
			st.Close()
			return fmt.Errorf("accepted stream %d says pair %d stream %d", j, pi, sj)
		}
		p.srv[sj] = st
		if _, err := st.Write(msg[:]); err != nil {
			return fmt.Errorf("stream %d: echo: %w", sj, err)
		}
	}
	for j, st := range p.cli {
		if _, err := io.ReadFull(st, msg[:]); err != nil {
			return fmt.Errorf("stream %d: read echo: %w", j, err)
		}
		if binary.BigEndian.Uint64(msg[8:]) != uint64(j) {
			return fmt.Errorf("stream %d: echo of stream %d", j, binary.BigEndian.Uint64(msg[8:]))
		}
	}
	return nil
}

// close tears every pair down, farmWorkers at a time, and returns the first
// error of a session's close. Streams of raw TCP are its connections.
func (f *farm) close() error {
	var errs errOnce
	if f.eps != nil {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range farmWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(f.pairs); i = int(next.Add(1) - 1) {
					if ep := f.pairs[i].ep; ep != nil {
						errs.set(ep.close())
					}
				}
			}()
		}
		wg.Wait()
	}
	f.Close() // listeners, and anything a failed setup left
	return errs.get()
}

// memUse is what memInUse measures.
type memUse struct {
	heap, stack float64 // bytes: HeapAlloc, StackInuse
	goroutines  int
}

// memInUse returns the heap and stack bytes in use after two collections
// (the second also empties sync.Pool victim caches), and the goroutines.
func memInUse() memUse {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return memUse{float64(ms.HeapAlloc), float64(ms.StackInuse), runtime.NumGoroutine()}
}

// total is heap plus stack.
func (m memUse) total() float64 { return m.heap + m.stack }

// settle waits until the goroutine count has stayed the same for 50 ms (at
// most 2 s), so that helpers the last operation started (a deferred window
// update, a coalescing timer's flush) are gone before a measurement.
func settle() {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(2 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == last {
			same++
		} else {
			last, same = g, 0
		}
	}
}

// idlePause is how long sessions stay without traffic before they are
// measured idle, for every implementation alike. An idle session of ours
// lets its send loop's goroutine exit 100 to 200 ms after its last frame
// (sendLoopIdle in the library); a session that sent a moment ago is not
// idle yet. The smoke test sets it to 0.
var idlePause = time.Second

// farmCost is one measurement of a farm against the baseline before it,
// per pair.
type farmCost struct {
	bytes, stack, goroutines float64 // bytes is heap plus stack
}

func costSince(m0 memUse, n int) farmCost {
	time.Sleep(idlePause)
	settle()
	m := memInUse()
	return farmCost{
		bytes:      (m.total() - m0.total()) / float64(n),
		stack:      (m.stack - m0.stack) / float64(n),
		goroutines: float64(m.goroutines-m0.goroutines) / float64(n),
	}
}

// startFarm sets up n pairs with their streams under a watchdog, and
// returns the memory baseline taken before the first dial. stopFarm tears
// it down.
func startFarm(im impl, n int) (*farm, *watchdog, memUse, error) {
	f, err := newFarm(im, n, farmStreams)
	if err != nil {
		return nil, nil, memUse{}, err
	}
	wd := startWatchdog(stallLimit, f)
	m0 := memInUse()
	if err := f.setup(wd.tick); err != nil {
		err = wd.check(err)
		wd.stop()
		f.close()
		return nil, nil, memUse{}, err
	}
	return f, wd, m0, nil
}

// stopFarm stops the watchdog and closes the farm; a close error becomes
// *err unless an earlier error is there.
func stopFarm(f *farm, wd *watchdog, err *error) {
	wd.stop()
	if cerr := f.close(); *err == nil {
		*err = cerr
	}
}

// idleSessionsRig is scenario 9: n session pairs, each with farmStreams
// idle streams after one 16-byte exchange. One op sets them up, measures
// heap+stack and goroutines per pair against a baseline taken before, and
// tears them down. Raw TCP's pairs are farmStreams connections each, so it
// is capped at fewer pairs by the descriptor limit; its kernel memory is
// not counted.
type idleSessionsRig struct {
	im      impl
	n       int    // pairs, after capPairs
	profile string // if set, where each op writes a heap profile while its pairs are up

	bytes, stack, gs   []float64 // per op, per pair: heap+stack, of which stack, goroutines
	sessRate, pairRate []float64 // per op: sessions/s (dial + both sessions), pairs/s (everything)
}

func newIdleSessionsRig(im impl, n int) *idleSessionsRig {
	return &idleSessionsRig{im: im, n: capPairs(im, n, farmStreams)}
}

func (g *idleSessionsRig) op() (err error) {
	f, wd, m0, err := startFarm(g.im, g.n)
	if err != nil {
		return err
	}
	defer stopFarm(f, wd, &err)
	c := costSince(m0, g.n)
	if g.profile != "" {
		if err := writeHeapProfile(g.profile); err != nil {
			return err
		}
	}
	g.bytes = append(g.bytes, c.bytes)
	g.stack = append(g.stack, c.stack)
	g.gs = append(g.gs, c.goroutines)
	if f.sessionTime > 0 {
		g.sessRate = append(g.sessRate, float64(g.n)/f.sessionTime.Seconds())
	}
	g.pairRate = append(g.pairRate, float64(g.n)/(f.sessionTime+f.streamTime).Seconds())
	wd.tick()
	return nil
}

// busyThenIdleRig is scenario 10: the pairs of scenario 9 (fewer of them),
// measured idle, then each moves size bytes each way on its first stream
// (busyConc pairs at a time, both directions at once), then measured idle
// again. The goal is that a session that was busy costs no more at rest
// than one that never was: buffers go back.
type busyThenIdleRig struct {
	im   impl
	n    int
	size int64

	profile string // if set, a file prefix: each op writes <profile>-before.pprof and -after.pprof

	idle, after, ratio []float64 // per op: heap+stack per pair before and after, after/idle
	afterStack         []float64 // per op: the stack part of after
	mbps               []float64 // per op: the busy phase's aggregate MB/s, both ways
}

// busyConc is how many pairs move their bytes at once.
const busyConc = 8

func newBusyThenIdleRig(im impl, n int, size int64) *busyThenIdleRig {
	return &busyThenIdleRig{im: im, n: capPairs(im, n, farmStreams), size: size}
}

func (g *busyThenIdleRig) op() (err error) {
	f, wd, m0, err := startFarm(g.im, g.n)
	if err != nil {
		return err
	}
	defer stopFarm(f, wd, &err)
	idle := costSince(m0, g.n)
	if g.profile != "" {
		if err := writeHeapProfile(g.profile + "-before.pprof"); err != nil {
			return err
		}
	}

	t0 := time.Now()
	if err := g.busy(f, wd.tick); err != nil {
		return wd.check(err)
	}
	busy := time.Since(t0)
	after := costSince(m0, g.n)
	if g.profile != "" {
		if err := writeHeapProfile(g.profile + "-after.pprof"); err != nil {
			return err
		}
	}

	g.idle = append(g.idle, idle.bytes)
	g.after = append(g.after, after.bytes)
	g.afterStack = append(g.afterStack, after.stack)
	g.ratio = append(g.ratio, after.bytes/idle.bytes)
	g.mbps = append(g.mbps, float64(2*g.size*int64(g.n))/1e6/busy.Seconds())
	wd.tick()
	return nil
}

// busy moves g.size bytes each way on every pair's first stream, busyConc
// pairs at a time, each direction written and read at once in 32 KiB
// writes and reads.
func (g *busyThenIdleRig) busy(f *farm, tick func()) error {
	const chunk = 32 << 10
	buf := fill(chunk) // only read, by every writer
	var next atomic.Int64
	var failed atomic.Bool
	var errs errOnce
	var wg sync.WaitGroup
	for range busyConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rbuf := make([]byte, chunk)
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(f.pairs) {
					return
				}
				cli, srv := f.pairs[i].cli[0], f.pairs[i].srv[0]
				var perr errOnce
				fail := func(err error) {
					if err != nil {
						perr.set(err)
						cli.Close() // unblocks the other three
						srv.Close()
					}
				}
				var pw sync.WaitGroup
				pw.Add(3)
				go func() { defer pw.Done(); fail(writeN(cli, buf, g.size)) }()
				go func() { defer pw.Done(); fail(writeN(srv, buf, g.size)) }()
				go func() { defer pw.Done(); fail(readN(srv, make([]byte, chunk), g.size)) }()
				fail(readN(cli, rbuf, g.size))
				pw.Wait()
				if err := perr.get(); err != nil {
					errs.set(fmt.Errorf("pair %d: %w", i, err))
					failed.Store(true)
					return
				}
				tick()
			}
		}()
	}
	wg.Wait()
	return errs.get()
}

// writeHeapProfile writes the heap profile as of the last collection to
// path: what is live in a scenario, where `go test -memprofile` sees only
// what is left after every benchmark ended.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
}
