package main

// This file is the client side of muxperf -connect: the control
// connection, a link per test, and the tests' drivers. The protocol is
// described at the top of server.go.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d5da5f0f/yamux/bench"
)

// remote is the client's connection to a muxperf server.
type remote struct {
	addr string
	impl bench.Impl
	ctl  net.Conn
	rd   *bufio.Reader
	lost func(error) // called when the control connection fails; may be nil
}

// dialRemote connects the control connection and learns what the server
// serves; want, if not empty, must be it.
func dialRemote(ctx context.Context, addr, want string) (*remote, error) {
	c, err := dialHello(ctx, addr, hello{kind: kindControl, impl: want})
	if err != nil {
		return nil, err
	}
	r := &remote{addr: addr, ctl: c, rd: bufio.NewReader(c)}
	f, err := r.reply(ctx)
	if err == nil && len(f) != 1 {
		err = fmt.Errorf("unexpected answer %q", f)
	}
	if err == nil {
		r.impl, err = implNamed(f[0])
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("server %s: %w", addr, err)
	}
	return r, nil
}

func (r *remote) close() error { return r.ctl.Close() }

// dialHello dials addr and writes h.
func dialHello(ctx context.Context, addr string, h hello) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(h.encode()); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// cmd sends one control command and returns the fields of the answer
// after "ok".
func (r *remote) cmd(ctx context.Context, format string, args ...any) ([]string, error) {
	r.ctl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(r.ctl, format+"\n", args...); err != nil {
		return nil, r.fail(err)
	}
	f, err := r.reply(ctx)
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, r.fail(err)
	}
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return f, nil
}

// fail reports a broken control connection: the server is gone.
func (r *remote) fail(err error) error {
	err = fmt.Errorf("lost the server: %w", err)
	if r.lost != nil {
		r.lost(err)
	}
	return err
}

func (r *remote) reply(ctx context.Context) ([]string, error) {
	r.ctl.SetReadDeadline(time.Now().Add(waitLimit + 10*time.Second))
	stop := context.AfterFunc(ctx, func() { r.ctl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := r.rd.ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	f := strings.Fields(line)
	switch {
	case len(f) > 0 && f[0] == "ok":
		return f[1:], nil
	case len(f) > 0 && f[0] == "error":
		return nil, errors.New(strings.Join(f[1:], " "))
	}
	return nil, fmt.Errorf("unexpected answer %q", line)
}

// heap asks the server to weigh its live heap and goroutines.
func (r *remote) heap(ctx context.Context) (heap, goroutines float64, err error) {
	f, err := r.cmd(ctx, "heap")
	if err != nil {
		return 0, 0, err
	}
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("server: unexpected heap answer %q", f)
	}
	h, err1 := strconv.ParseUint(f[0], 10, 64)
	g, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("server: unexpected heap answer %q", f)
	}
	return float64(h), float64(g), nil
}

// link is the client's end of one test: a session of a multiplexer, or
// for raw TCP a dialer that makes a connection per stream.
type link struct {
	sess *bench.Session // nil for raw TCP
	addr string
	h    hello

	mu     sync.Mutex // raw TCP: guards below
	closed bool
	conns  map[*tcpStream]struct{}
}

// connect starts one test's link. For a multiplexer it dials one
// connection and starts a client session over it.
func (r *remote) connect(ctx context.Context, test string, streams, size int) (*link, error) {
	h := hello{test: testCodes[test], streams: uint32(streams), size: uint32(size), impl: r.impl.Name()}
	if !r.impl.Multiplexed() {
		h.kind = kindTCP
		return &link{addr: r.addr, h: h, conns: map[*tcpStream]struct{}{}}, nil
	}
	h.kind = kindSession
	c, err := dialHello(ctx, r.addr, h)
	if err != nil {
		return nil, err
	}
	sess, err := r.impl.Client(c, streams)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &link{sess: sess}, nil
}

func (l *link) open(ctx context.Context) (net.Conn, error) {
	if l.sess != nil {
		return l.sess.Open(ctx)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	t := &tcpStream{Conn: c, l: l, hello: l.h.encode()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[t] = struct{}{}
	return t, nil
}

// close ends the session, or closes every raw-TCP connection; safe to call
// more than once and concurrently with open.
func (l *link) close() error {
	if l.sess != nil {
		return l.sess.Close()
	}
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return nil
}

func (l *link) rtt() time.Duration {
	if l.sess != nil {
		return l.sess.RTT()
	}
	return 0
}

// tcpStream is a raw-TCP stream: its first Write carries the hello too, so
// that the baseline sends no extra segment.
type tcpStream struct {
	net.Conn
	l     *link
	hello []byte // sent with the first Write; owned by the writer
}

func (t *tcpStream) Write(p []byte) (int, error) {
	if t.hello == nil {
		return t.Conn.Write(p)
	}
	b := append(t.hello, p...)
	t.hello = nil
	n, err := t.Conn.Write(b)
	return max(0, n-helloSize), err
}

func (t *tcpStream) Close() error {
	t.l.mu.Lock()
	delete(t.l.conns, t)
	t.l.mu.Unlock()
	return t.Conn.Close()
}

// runRemote runs the tests against a muxperf server.
func runRemote(ctx context.Context, c *config, stderr io.Writer) (*report, error) {
	r, err := dialRemote(ctx, c.connect, c.impl)
	if err != nil {
		return nil, err
	}
	defer r.close()
	// Once the control connection fails, the tests left cannot run.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.lost = cancel
	c.impls = []bench.Impl{r.impl}
	rep := newReport(c, "remote")
	err = runTests(ctx, c, rep, stderr, func(ctx context.Context, im bench.Impl, test string, m *bench.Meter) (bench.Result, error) {
		// Start when the server has finished with the previous test.
		if _, err := r.cmd(ctx, "wait 0 0"); err != nil {
			return bench.Result{}, err
		}
		switch test {
		case testBulk:
			return remoteBulk(ctx, r, c, m)
		case testStreams:
			return remoteStreams(ctx, r, c, m)
		case testRPC:
			return remoteRPC(ctx, r, c, m)
		default:
			return remoteIdle(ctx, r, c)
		}
	})
	return rep, err
}

// runErr prefers ctx's error to the failure it caused.
func runErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// writeRecord writes one record of n bytes in writes of len(buf), calling
// count after each.
func writeRecord(w io.Writer, buf []byte, n int64, count func(int64)) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for n > 0 {
		k := min(int64(len(buf)), n)
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
		if count != nil {
			count(k)
		}
	}
	return nil
}

// fill returns n bytes of a fixed pattern.
func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// answer is the server's answer to a stream's last record.
type answer struct {
	total uint64
	at    time.Time
	err   error
}

// readAnswers reads the server's answers on st until the last, counting the
// bytes each confirms in count (nil: none).
func readAnswers(st io.Reader, count func(int64)) answer {
	var b [8]byte
	var last uint64
	for {
		if _, err := io.ReadFull(st, b[:]); err != nil {
			return answer{err: fmt.Errorf("waiting for the server's count: %w", err)}
		}
		v := binary.BigEndian.Uint64(b[:])
		if v&endFlag != 0 {
			return answer{total: v &^ endFlag, at: time.Now()}
		}
		if count != nil {
			count(int64(v - last))
		}
		last = v
	}
}

// remoteBulk is the bulk test: one stream written flat out for -d in
// records of max(-size, 1 MiB). It ends when the server confirms the last
// byte, so the time includes draining what was in flight.
func remoteBulk(ctx context.Context, r *remote, c *config, m *bench.Meter) (bench.Result, error) {
	l, err := r.connect(ctx, testBulk, 1, int(c.size))
	if err != nil {
		return bench.Result{}, err
	}
	defer l.close()
	defer context.AfterFunc(ctx, func() { l.close() })()
	st, err := l.open(ctx)
	if err != nil {
		return bench.Result{}, runErr(ctx, err)
	}
	defer st.Close()
	m.SetRTT(l.rtt)
	defer m.SetRTT(nil)
	m.SetStreams(1)

	answers := make(chan answer, 1)
	go func() { answers <- readAnswers(st, m.AddBytes) }()
	buf := fill(int(c.size))
	record := max(c.size, 1<<20)
	var sent int64
	t0 := time.Now()
	for sent == 0 || (time.Since(t0) < c.d && ctx.Err() == nil) {
		if err = writeRecord(st, buf, record, nil); err != nil {
			break
		}
		sent += record
	}
	if err == nil {
		err = writeRecord(st, buf, 0, nil)
	}
	if err != nil {
		l.close() // ends the reader
		<-answers
		return bench.Result{}, runErr(ctx, err)
	}
	a := <-answers
	if a.err != nil {
		return bench.Result{}, runErr(ctx, a.err)
	}
	if a.total != uint64(sent) {
		return bench.Result{}, fmt.Errorf("server read %d bytes, client sent %d", a.total, sent)
	}
	return bench.Result{Elapsed: a.at.Sub(t0), Bytes: sent, Streams: 1}, nil
}

// streamSizes returns the seeded sizes of the streams test, as
// newStreamsRig draws them.
func streamSizes(n int, minSize, maxSize int64) []int64 {
	const seed = 1
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sizes := make([]int64, n)
	for i := range sizes {
		sizes[i] = minSize + rng.Int64N(maxSize-minSize+1)
	}
	return sizes
}

// firstErr keeps the first error of several goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (e *firstErr) set(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *firstErr) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// remoteStreams is the streams test: rounds of -streams streams opened at
// once, each a record of its seeded size in 32 KiB writes, until -d. A
// round ends when the server confirmed every stream's bytes. Progress
// counts bytes written.
func remoteStreams(ctx context.Context, r *remote, c *config, m *bench.Meter) (bench.Result, error) {
	l, err := r.connect(ctx, testStreams, c.streams, streamsChunk)
	if err != nil {
		return bench.Result{}, err
	}
	defer l.close()
	defer context.AfterFunc(ctx, func() { l.close() })()
	m.SetRTT(l.rtt)
	defer m.SetRTT(nil)
	m.SetStreams(int64(c.streams))

	sizes := streamSizes(c.streams, c.streamSize, 4*c.streamSize)
	buf := fill(streamsChunk)
	var total int64
	t0 := time.Now()
	for total == 0 || (time.Since(t0) < c.d && ctx.Err() == nil) {
		conns := make([]net.Conn, 0, c.streams)
		for range c.streams {
			st, err := l.open(ctx)
			if err != nil {
				for _, st := range conns {
					st.Close()
				}
				return bench.Result{}, runErr(ctx, fmt.Errorf("open: %w", err))
			}
			conns = append(conns, st)
		}
		var errs firstErr
		var wg sync.WaitGroup
		for i, st := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				err := writeRecord(st, buf, sizes[i], m.AddBytes)
				if err == nil {
					err = writeRecord(st, buf, 0, nil)
				}
				var a answer
				if err == nil {
					if a = readAnswers(st, nil); a.err != nil {
						err = a.err
					} else if a.total != uint64(sizes[i]) {
						err = fmt.Errorf("server read %d bytes of a stream, client sent %d", a.total, sizes[i])
					}
				}
				if err != nil {
					errs.set(err)
					l.close() // fails the others: the run is over
				}
			}()
		}
		wg.Wait()
		if err := errs.get(); err != nil {
			return bench.Result{}, runErr(ctx, err)
		}
		for _, s := range sizes {
			total += s
		}
	}
	return bench.Result{Elapsed: time.Since(t0), Bytes: total, Streams: c.streams}, nil
}

// remoteRPC is the rpc test: -conc goroutines each doing requests on a new
// stream per request until -d.
func remoteRPC(ctx context.Context, r *remote, c *config, m *bench.Meter) (bench.Result, error) {
	l, err := r.connect(ctx, testRPC, 2*c.conc, 0)
	if err != nil {
		return bench.Result{}, err
	}
	defer l.close()
	defer context.AfterFunc(ctx, func() { l.close() })()
	m.SetRTT(l.rtt)
	defer m.SetRTT(nil)
	m.SetStreams(int64(c.conc))

	req := fill(rpcRequestSize)
	lats := make([][]time.Duration, c.conc)
	var errs firstErr
	var failed atomic.Bool
	var wg sync.WaitGroup
	t0 := time.Now()
	deadline := t0.Add(c.d)
	for w := range c.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := make([]byte, rpcResponseSize)
			for first := w == 0; (first || time.Now().Before(deadline)) && !failed.Load(); first = false {
				t := time.Now()
				err := call(ctx, l, req, resp)
				if err != nil {
					errs.set(err)
					failed.Store(true)
					return
				}
				lats[w] = append(lats[w], time.Since(t))
				m.AddCalls(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := errs.get(); err != nil {
		return bench.Result{}, runErr(ctx, err)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	return bench.Result{
		Elapsed: elapsed, Calls: int64(len(all)), Streams: c.conc,
		P50: percentile(all, 50), P99: percentile(all, 99),
	}, nil
}

func call(ctx context.Context, l *link, req, resp []byte) error {
	st, err := l.open(ctx)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer st.Close()
	if _, err := st.Write(req); err != nil {
		return err
	}
	_, err = io.ReadFull(st, resp)
	return err
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.9999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// remoteIdle is the idle test: the live heap and goroutines of -idle open
// streams that carry nothing, this process's growth plus the server's.
func remoteIdle(ctx context.Context, r *remote, c *config) (bench.Result, error) {
	if !r.impl.Multiplexed() {
		return bench.Result{}, bench.ErrNotMultiplexed
	}
	l, err := r.connect(ctx, testIdle, c.idle, 0)
	if err != nil {
		return bench.Result{}, err
	}
	defer l.close()
	defer context.AfterFunc(ctx, func() { l.close() })()
	if _, err := r.cmd(ctx, "wait 1 0"); err != nil {
		return bench.Result{}, err
	}
	t0 := time.Now()
	srvHeap0, srvG0, err := r.heap(ctx)
	if err != nil {
		return bench.Result{}, err
	}
	cliHeap0, cliG0 := float64(bench.HeapInUse()), float64(runtime.NumGoroutine())

	streams := make([]net.Conn, 0, c.idle)
	defer func() {
		for _, st := range streams {
			st.Close()
		}
	}()
	for range c.idle {
		st, err := l.open(ctx)
		if err != nil {
			return bench.Result{}, runErr(ctx, fmt.Errorf("open %d: %w", len(streams), err))
		}
		streams = append(streams, st)
	}
	if _, err := r.cmd(ctx, "wait 1 %d", c.idle); err != nil {
		return bench.Result{}, err
	}
	srvHeap1, srvG1, err := r.heap(ctx)
	if err != nil {
		return bench.Result{}, err
	}
	cliHeap1, cliG1 := float64(bench.HeapInUse()), float64(runtime.NumGoroutine())
	n := float64(c.idle)
	return bench.Result{
		Elapsed:             time.Since(t0),
		Streams:             c.idle,
		BytesPerStream:      (cliHeap1 - cliHeap0 + srvHeap1 - srvHeap0) / n,
		GoroutinesPerStream: (cliG1 - cliG0 + srvG1 - srvG0) / n,
	}, nil
}
