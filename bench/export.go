package bench

// This file is the package's exported face, for cmd/muxperf: the
// implementations under test (the adapters of adapter_*.go) and
// time-bounded runs of seven scenarios on the existing rigs (bulkRig,
// streamsRig, rpcRig with rawRPC, idleRig, idleSessionsRig,
// busyThenIdleRig, lowRateRig). The benchmarks do not use it.

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotMultiplexed is returned by [Impl.Client], [Impl.Server] and
// [RunIdle] for raw TCP, which has no session and no idle streams to weigh.
var ErrNotMultiplexed = errors.New("bench: raw TCP is not multiplexed")

// Impl is one implementation under test: a multiplexer over one TCP
// connection, or raw TCP with one connection per stream. Its adapter uses
// the implementation's DefaultConfig, changed only where a run needs more
// streams than the default allows (see adapter_*.go and README.md). Get
// one from [Impls]; the zero Impl is not usable.
type Impl struct{ im impl }

// Impls returns every implementation: ours, hashicorp, libp2p, smux and
// tcp, in that order.
func Impls() []Impl {
	var out []Impl
	for _, im := range impls() {
		out = append(out, Impl{im})
	}
	return out
}

// Name returns the implementation's short name, the value of the impl= key
// in benchmark names: ours, hashicorp, libp2p, smux or tcp.
func (i Impl) Name() string { return i.im.name() }

// Multiplexed reports whether i carries its streams over one connection. It
// is false for raw TCP.
func (i Impl) Multiplexed() bool {
	_, ok := i.im.(muxImpl)
	return ok
}

// Client starts the client end of a session of i over conn, for a peer
// that runs [Impl.Server] of the same implementation. streams is the most
// streams the session will have open at once; adapters whose default
// refuses that many raise their limit. It returns [ErrNotMultiplexed] for
// raw TCP. On error conn is left open.
func (i Impl) Client(conn net.Conn, streams int) (*Session, error) {
	m, ok := i.im.(muxImpl)
	if !ok {
		return nil, ErrNotMultiplexed
	}
	s, err := m.client(conn, options{streams: streams})
	if err != nil {
		return nil, err
	}
	return &Session{s}, nil
}

// Server is [Impl.Client] for the accepting end.
func (i Impl) Server(conn net.Conn, streams int) (*Session, error) {
	m, ok := i.im.(muxImpl)
	if !ok {
		return nil, ErrNotMultiplexed
	}
	s, err := m.server(conn, options{streams: streams})
	if err != nil {
		return nil, err
	}
	return &Session{s}, nil
}

// Session is one end of a multiplexed connection made by [Impl.Client] or
// [Impl.Server]. Its methods are safe for concurrent use.
type Session struct{ s session }

// Open opens a new stream to the peer. Where the implementation takes no
// context (hashicorp, smux), ctx is ignored and its own open timeout
// applies.
func (s *Session) Open(ctx context.Context) (net.Conn, error) { return s.s.open(ctx) }

// Accept blocks until the peer opens a stream, and returns an error once
// the session is closed.
func (s *Session) Accept() (net.Conn, error) { return s.s.accept() }

// Close ends the session and every stream of it.
func (s *Session) Close() error { return s.s.close() }

// RTT returns the implementation's own last measured round trip (ours and
// libp2p measure it themselves), or 0 where it keeps none (hashicorp,
// smux). It sends nothing: pinging would change what is measured (ours
// tunes its windows from the RTT).
func (s *Session) RTT() time.Duration { return sessionRTT(s.s) }

func sessionRTT(s session) time.Duration {
	switch s := s.(type) {
	case oursSession:
		return s.s.RTT()
	case libp2pSession:
		return s.s.RTT()
	}
	return 0
}

// Meter holds a running test's counters: the Run functions (or any other
// driver) update it as they go, and a progress printer may read it from
// another goroutine at any time. The zero value is ready to use.
type Meter struct {
	bytes   atomic.Int64
	calls   atomic.Int64
	streams atomic.Int64

	mu  sync.Mutex
	rtt func() time.Duration // nil: unknown
}

// AddBytes counts n more payload bytes delivered.
func (m *Meter) AddBytes(n int64) { m.bytes.Add(n) }

// AddCalls counts n more requests completed (or handed to a worker).
func (m *Meter) AddCalls(n int64) { m.calls.Add(n) }

// SetStreams records how many streams the test has open now.
func (m *Meter) SetStreams(n int64) { m.streams.Store(n) }

// SetRTT sets where [Meter.RTT] reads the round trip from; nil means
// unknown.
func (m *Meter) SetRTT(f func() time.Duration) {
	m.mu.Lock()
	m.rtt = f
	m.mu.Unlock()
}

// Bytes returns the payload bytes counted so far.
func (m *Meter) Bytes() int64 { return m.bytes.Load() }

// Calls returns the requests counted so far.
func (m *Meter) Calls() int64 { return m.calls.Load() }

// Streams returns the streams open now, as last set.
func (m *Meter) Streams() int64 { return m.streams.Load() }

// RTT returns the session's last measured round trip, or 0 if unknown.
func (m *Meter) RTT() time.Duration {
	m.mu.Lock()
	f := m.rtt
	m.mu.Unlock()
	if f == nil {
		return 0
	}
	return f()
}

// setRTT is SetRTT on a possibly nil Meter, from the client end of ep.
func (m *Meter) setRTT(ep *endpoints) {
	if m == nil {
		return
	}
	if ep == nil {
		m.SetRTT(nil)
		return
	}
	cli := ep.cli
	m.SetRTT(func() time.Duration { return sessionRTT(cli) })
}

// Result is what one run measured. Fields that do not apply to the test
// are zero.
type Result struct {
	Elapsed time.Duration // measured time
	Bytes   int64         // payload bytes delivered (bulk, streams)
	Calls   int64         // requests completed (rpc)
	Streams int           // streams at once: 1 (bulk), n (streams, idle), concurrency (rpc)

	P50, P99 time.Duration // request latency (rpc)

	// Fairness is the mean over rounds of p90/p10 of the times at which
	// each stream delivered its first size bytes (streams; see streamsRig).
	Fairness float64

	BytesPerStream      float64 // live heap per idle stream, both ends (idle)
	GoroutinesPerStream float64 // goroutines per idle stream, both ends (idle)

	Pairs             int     // session pairs (sessions, busyidle, lowrate); fewer than asked when the descriptor limit allows no more
	BytesPerPair      float64 // heap+stack per idle pair, both ends (sessions; busyidle: before the traffic)
	GoroutinesPerPair float64 // goroutines per idle pair, both ends (sessions)
	SessionsPerSec    float64 // connections dialled with both sessions started, per second (sessions; 0 for raw TCP)
	PairsPerSec       float64 // pairs set up per second, streams and their exchange included (sessions)
	BusyBytesPerPair  float64 // heap+stack per pair idle again after the traffic (busyidle)

	CPUPerCall time.Duration // process CPU time (user + system) per request (lowrate)
}

// BusyRatio is BusyBytesPerPair over BytesPerPair, or 0.
func (r Result) BusyRatio() float64 {
	if r.BytesPerPair <= 0 {
		return 0
	}
	return r.BusyBytesPerPair / r.BytesPerPair
}

// MBps returns the throughput in MB/s (10^6 bytes per second), or 0.
func (r Result) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// CallsPerSec returns the request rate, or 0.
func (r Result) CallsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// closeOnDone closes ep when ctx ends, so that a cancelled or overdue run
// fails its current op instead of hanging. The returned func stops it.
func closeOnDone(ctx context.Context, ep *endpoints) (stop func() bool) {
	return context.AfterFunc(ctx, func() { ep.close() })
}

// watch ties a rig to ctx and m while a Run function runs: ctx's end
// closes the rig, and m shows its stream count and RTT. The returned func,
// deferred, undoes that and closes the rig with closeRig, keeping the first
// error in *errp.
func watch(ctx context.Context, ep *endpoints, m *Meter, streams int64, closeRig func() error, errp *error) func() {
	stop := closeOnDone(ctx, ep)
	m.setRTT(ep)
	if m != nil {
		m.SetStreams(streams)
	}
	return func() {
		stop()
		m.setRTT(nil)
		if cerr := closeRig(); *errp == nil {
			*errp = runErr(ctx, cerr)
		}
	}
}

// runErr prefers ctx's error to the failure it caused.
func runErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// RunBulk is the bulk scenario (BenchmarkBulk) for about d: one stream, the
// client writing ops of volume bytes in writes of size bytes, the server
// reading them with a buffer of size bytes; each op ends when the server
// has read it all. It does at least one op, stops early when ctx ends, and
// counts bytes in m (nil: none) after each op. It blocks until the rig is
// torn down.
func RunBulk(ctx context.Context, im Impl, size int, volume int64, d time.Duration, m *Meter) (res Result, err error) {
	if size <= 0 || volume < int64(size) {
		return Result{}, errors.New("bench: RunBulk needs 0 < size <= volume")
	}
	g, err := newBulkRig(im.im, size, volume)
	if err != nil {
		return Result{}, err
	}
	defer watch(ctx, g.ep, m, 1, g.close, &err)()
	t0 := time.Now()
	var ops int64
	for ops == 0 || (time.Since(t0) < d && ctx.Err() == nil) {
		if err := g.op(); err != nil {
			return Result{}, runErr(ctx, err)
		}
		ops++
		if m != nil {
			m.AddBytes(volume)
		}
	}
	return Result{Elapsed: time.Since(t0), Bytes: ops * volume, Streams: 1}, nil
}

// RunStreams is the streams scenario (BenchmarkStreams) for about d: each
// round opens n streams at once, each carrying a seeded random size to
// 4×size bytes from client to server in 32 KiB writes, and ends when every
// stream is read to EOF. It does at least one round, stops early when ctx
// ends, and counts bytes in m (nil: none) after each round.
func RunStreams(ctx context.Context, im Impl, n int, size int64, d time.Duration, m *Meter) (res Result, err error) {
	if n <= 0 || size <= 0 {
		return Result{}, errors.New("bench: RunStreams needs n > 0 and size > 0")
	}
	g, err := newStreamsRig(im.im, n, size, 4*size, 1)
	if err != nil {
		return Result{}, err
	}
	defer watch(ctx, g.ep, m, int64(n), g.close, &err)()
	t0 := time.Now()
	var rounds int64
	for rounds == 0 || (time.Since(t0) < d && ctx.Err() == nil) {
		if err := g.op(); err != nil {
			return Result{}, runErr(ctx, err)
		}
		rounds++
		if m != nil {
			m.AddBytes(g.total)
		}
	}
	return Result{
		Elapsed:  time.Since(t0),
		Bytes:    rounds * g.total,
		Streams:  n,
		Fairness: mean(g.fair),
	}, nil
}

// RunRPC is the RPC scenario (BenchmarkRPC) for about d: conc client
// goroutines each doing requests on a new stream per request (128 B
// request, 1 KiB response, close; raw TCP: a new connection per request).
// Elapsed includes waiting for the requests in flight at the end. It does
// at least one request, stops early when ctx ends, and counts requests in
// m (nil: none) as they are handed to the workers.
func RunRPC(ctx context.Context, im Impl, conc int, d time.Duration, m *Meter) (res Result, err error) {
	if conc <= 0 {
		return Result{}, errors.New("bench: RunRPC needs conc > 0")
	}
	g, err := newRPCRig(im.im, newRawRPC(), conc)
	if err != nil {
		return Result{}, err
	}
	defer watch(ctx, g.ep, m, int64(conc), g.close, &err)()
	t0 := time.Now()
	var calls int64
	for calls == 0 || (time.Since(t0) < d && ctx.Err() == nil) {
		if err := g.op(); err != nil {
			break // finish returns it
		}
		calls++
		if m != nil {
			m.AddCalls(1)
		}
	}
	if err := g.finish(); err != nil {
		return Result{}, runErr(ctx, err)
	}
	elapsed := time.Since(t0)
	lat := g.latencies()
	return Result{
		Elapsed: elapsed,
		Calls:   int64(len(lat)),
		Streams: conc,
		P50:     percentile(lat, 50),
		P99:     percentile(lat, 99),
	}, nil
}

// RunIdle is the idle-streams scenario (BenchmarkIdleStreams,
// traffic=none): it connects, opens n streams that carry nothing, and
// measures the live heap and goroutines they cost, both ends together, in
// this process (so nothing else should run meanwhile). It returns
// [ErrNotMultiplexed] for raw TCP, and ctx's error if ctx ended before it
// started; once started it runs to the end (its rig's watchdog bounds it).
func RunIdle(ctx context.Context, im Impl, n int) (Result, error) {
	if !im.Multiplexed() {
		return Result{}, ErrNotMultiplexed
	}
	if n <= 0 {
		return Result{}, errors.New("bench: RunIdle needs n > 0")
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	g := newIdleRig(im.im, n, false)
	t0 := time.Now()
	if err := g.op(); err != nil {
		return Result{}, err
	}
	return Result{
		Elapsed:             time.Since(t0),
		Streams:             n,
		BytesPerStream:      g.bytes[0],
		GoroutinesPerStream: g.gs[0],
	}, nil
}

// RunIdleSessions is scenario 9 (BenchmarkIdleSessions): it sets up n
// session pairs over loopback TCP, each with 10 streams after a 16-byte
// exchange each way, and measures heap+stack and goroutines per pair (both
// ends, in this process, so nothing else should run meanwhile) and the
// setup rates. Raw TCP pairs are 10 connections each; n is capped by the
// descriptor limit (Result.Pairs says how many ran). It returns ctx's error
// if ctx ended before it started; once started it runs to the end (its
// rig's watchdog bounds it).
func RunIdleSessions(ctx context.Context, im Impl, n int) (Result, error) {
	if n <= 0 {
		return Result{}, errors.New("bench: RunIdleSessions needs n > 0")
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	g := newIdleSessionsRig(im.im, n)
	t0 := time.Now()
	if err := g.op(); err != nil {
		return Result{}, err
	}
	r := Result{
		Elapsed:           time.Since(t0),
		Pairs:             g.n,
		BytesPerPair:      g.bytes[0],
		GoroutinesPerPair: g.gs[0],
		PairsPerSec:       g.pairRate[0],
	}
	if len(g.sessRate) > 0 {
		r.SessionsPerSec = g.sessRate[0]
	}
	return r, nil
}

// RunBusyThenIdle is scenario 10 (BenchmarkBusyThenIdle): the pairs of
// [RunIdleSessions], measured, then size bytes each way on each pair's
// first stream (8 pairs at a time), then measured again. Like
// RunIdleSessions it checks ctx only before it starts.
func RunBusyThenIdle(ctx context.Context, im Impl, n int, size int64) (Result, error) {
	if n <= 0 || size <= 0 {
		return Result{}, errors.New("bench: RunBusyThenIdle needs n > 0 and size > 0")
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	g := newBusyThenIdleRig(im.im, n, size)
	t0 := time.Now()
	if err := g.op(); err != nil {
		return Result{}, err
	}
	return Result{
		Elapsed:          time.Since(t0),
		Bytes:            2 * size * int64(g.n),
		Pairs:            g.n,
		BytesPerPair:     g.idle[0],
		BusyBytesPerPair: g.after[0],
	}, nil
}

// RunLowRate is scenario 12 (BenchmarkManySessionsLowRate) for about d:
// the pairs of [RunIdleSessions], every stream doing a 1 KiB request and
// 1 KiB answer once a second. It stops early when ctx ends, and counts
// requests in m (nil: none) as they complete. Elapsed is the traffic
// phase, setup excluded; CPUPerCall is the process's CPU time over it per
// request.
func RunLowRate(ctx context.Context, im Impl, n int, d time.Duration, m *Meter) (Result, error) {
	if n <= 0 || d <= 0 {
		return Result{}, errors.New("bench: RunLowRate needs n > 0 and d > 0")
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	g := newLowRateRig(im.im, n, d, time.Second)
	g.stop = ctx.Done()
	if m != nil {
		g.count = m.AddCalls
		m.SetStreams(int64(g.n * farmStreams))
	}
	if err := g.op(); err != nil {
		return Result{}, runErr(ctx, err)
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	return Result{
		Elapsed:    g.elapsed[0],
		Calls:      g.calls[0],
		Streams:    g.n * farmStreams,
		Pairs:      g.n,
		P50:        time.Duration(g.p50[0] * 1e3),
		P99:        time.Duration(g.p99[0] * 1e3),
		CPUPerCall: time.Duration(g.cpuPerReq[0] * 1e3),
	}, nil
}

// HeapInUse collects garbage twice (the second also empties sync.Pool
// victim caches) and returns the live heap in bytes, as the idle scenario
// measures it. A remote peer uses it to weigh its own end.
func HeapInUse() uint64 { return heapNow() }
