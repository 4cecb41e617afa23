package interop

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
)

// mux is the little every scenario needs from one end of a session, ours
// or a peer's. Scenarios are written once against it and run over the table
// of pairings.
type mux interface {
	// Open opens a stream. Its deadline is set to ctx's deadline, so that no
	// Read or Write on it can outlive the test.
	Open(ctx context.Context) (stream, error)
	// Accept accepts a stream opened by the other end; deadline as Open.
	Accept(ctx context.Context) (stream, error)
	// Ping sends a ping and waits for the answer.
	Ping(ctx context.Context) (time.Duration, error)
	// GoAway tells the other end to open no more streams.
	GoAway() error
	// Close ends the session.
	Close() error
}

// stream is a stream of any of the muxers.
type stream interface {
	io.ReadWriteCloser
	// CloseWrite sends FIN: the stream can still be read.
	CloseWrite() error
	// Reset sends RST, or returns errors.ErrUnsupported where the muxer
	// has no way to reset a stream (hashicorp/yamux).
	Reset() error
}

// deadliner is what every muxer's stream has to bound blocking calls.
type deadliner interface {
	SetDeadline(time.Time) error
}

// bound sets the stream's deadline to ctx's deadline, if it has one.
func bound(ctx context.Context, s deadliner) error {
	if d, ok := ctx.Deadline(); ok {
		return s.SetDeadline(d)
	}
	return nil
}

// oursMux adapts our *yamux.Session. Our *yamux.Stream is a stream as is.
type oursMux struct{ s *yamux.Session }

var _ stream = (*yamux.Stream)(nil)

func (m oursMux) Open(ctx context.Context) (stream, error) {
	st, err := m.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, bound(ctx, st)
}

func (m oursMux) Accept(ctx context.Context) (stream, error) {
	st, err := m.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, bound(ctx, st)
}

func (m oursMux) Ping(ctx context.Context) (time.Duration, error) { return m.s.Ping(ctx) }
func (m oursMux) GoAway() error                                   { return m.s.GoAway() }
func (m oursMux) Close() error                                    { return m.s.Close() }

// options tune the sessions for one scenario; zero values keep each
// muxer's defaults.
type options struct {
	oursMaxIncoming    int           // streams of the peer's we hold (queued unaccepted included) before we RST
	peerAcceptBacklog  int           // streams the peer queues unaccepted before it RSTs
	streamCloseTimeout time.Duration // hashicorp only: it RSTs a stream it closed when our FIN is this late
}

// peerImpl describes one other yamux implementation and the behaviour the
// scenarios expect from it.
type peerImpl struct {
	name string
	// newSession starts the peer's end of a session over conn.
	newSession func(conn net.Conn, client bool, o options) (mux, error)
	// errRemoteGoAway is what the peer's OpenStream returns (errors.Is)
	// once it has received our GoAway.
	errRemoteGoAway error
	// errReset is what the peer's Read and Write return (errors.Is) on a
	// stream we reset.
	errReset error
	// cutOffReadErr is what the peer's blocked Read returns (errors.Is)
	// when our end closes the session under it.
	cutOffReadErr error
	// goAwayEndsSession: the peer tears the whole session down when it
	// receives GoAway(normal), instead of only refusing new streams.
	goAwayEndsSession bool
}

// pair is one session between us and a peer over loopback TCP.
type pair struct {
	peer       *peerImpl
	oursClient bool
	ours       *yamux.Session // our end, for assertions only we can make
	a          mux            // our end
	b          mux            // the peer's end
}

// pairing is one row of the interop table: which peer, and which end is
// the client.
type pairing struct {
	peer       *peerImpl
	oursClient bool
}

func (p pairing) name() string {
	if p.oursClient {
		return p.peer.name + "/ours=client"
	}
	return p.peer.name + "/ours=server"
}

// pairings: our client against each peer's server, and each peer's client
// against our server.
var pairings = []pairing{
	{hashicorpImpl, true},
	{hashicorpImpl, false},
	{libp2pImpl, true},
	{libp2pImpl, false},
}

// forEachPairing runs f as a parallel subtest for every pairing, each with
// a fresh session pair.
func forEachPairing(t *testing.T, o options, f func(t *testing.T, ctx context.Context, p *pair)) {
	t.Helper()
	runPairings(t, pairings, o, f)
}

// pairingsOf returns the pairings with peer impl.
func pairingsOf(impl *peerImpl) []pairing {
	var ps []pairing
	for _, pg := range pairings {
		if pg.peer == impl {
			ps = append(ps, pg)
		}
	}
	return ps
}

// runPairings is forEachPairing over the pairings pgs.
func runPairings(t *testing.T, pgs []pairing, o options, f func(t *testing.T, ctx context.Context, p *pair)) {
	t.Helper()
	for _, pg := range pgs {
		t.Run(pg.name(), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			f(t, ctx, newPair(t, pg, o))
		})
	}
}

// testTimeout bounds every scenario: a hang fails the test instead of
// blocking the run.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newPair connects our session to the peer's over loopback TCP. Both are
// closed when the test ends.
func newPair(t *testing.T, pg pairing, o options) *pair {
	t.Helper()
	oc, pc := tcpPair(t)
	cfg := yamux.DefaultConfig()
	if o.oursMaxIncoming > 0 {
		cfg.MaxIncomingStreams = o.oursMaxIncoming
	}
	ours, err := yamux.NewSession(oc, pg.oursClient, cfg)
	if err != nil {
		t.Fatalf("our NewSession: %v", err)
	}
	t.Cleanup(func() { ours.Close() })
	peer, err := pg.peer.newSession(pc, !pg.oursClient, o)
	if err != nil {
		t.Fatalf("%s session: %v", pg.peer.name, err)
	}
	t.Cleanup(func() { peer.Close() })
	return &pair{peer: pg.peer, oursClient: pg.oursClient, ours: ours, a: oursMux{ours}, b: peer}
}

// tcpPair returns both ends of a fresh loopback TCP connection; both are
// closed when the test ends (the sessions close them earlier). The root
// module's tests have their own (helpers_test.go): a module cannot import
// another module's test helpers, and a non-test package only to share
// this would add public API.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close() })
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return c1, r.c
}

// withContext runs f, a peer call that takes no context, and returns early
// with ctx.Err() if ctx ends first. f then finishes in the background when
// the test's cleanup closes the session.
func withContext[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
