package libp2p

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testScope is a network.PeerScope whose spans count what is reserved and
// can refuse it.
type testScope struct {
	mu       sync.Mutex
	spans    []*testSpan
	refuse   bool // refuse every reservation from now on
	prios    map[uint8]int
	released int
}

var errNoMemory = errors.New("test: no memory")

func (s *testScope) BeginSpan() (network.ResourceScopeSpan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := &testSpan{scope: s}
	s.spans = append(s.spans, sp)
	return sp, nil
}

func (s *testScope) ReserveMemory(int, uint8) error { panic("reserved on the scope, not a span") }
func (s *testScope) ReleaseMemory(int)              { panic("released on the scope, not a span") }
func (s *testScope) Stat() network.ScopeStat        { return network.ScopeStat{} }
func (s *testScope) Peer() peer.ID                  { return "" }

func (s *testScope) setRefuse(v bool) {
	s.mu.Lock()
	s.refuse = v
	s.mu.Unlock()
}

// check fails t unless every span ended, and held nothing when it did.
func (s *testScope) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sp := range s.spans {
		if !sp.done || sp.heldAtDone != 0 {
			t.Errorf("span %d: done %v, %d bytes held when it ended; want done with 0", i, sp.done, sp.heldAtDone)
		}
	}
}

type testSpan struct {
	scope      *testScope
	held       int
	done       bool
	heldAtDone int
}

func (sp *testSpan) ReserveMemory(n int, prio uint8) error {
	s := sp.scope
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp.done {
		panic("ReserveMemory after Done")
	}
	if s.refuse {
		return errNoMemory
	}
	if s.prios == nil {
		s.prios = make(map[uint8]int)
	}
	s.prios[prio]++
	sp.held += n
	return nil
}

func (sp *testSpan) ReleaseMemory(n int) {
	s := sp.scope
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp.done {
		panic("ReleaseMemory after Done")
	}
	sp.held -= n
	s.released += n
	if sp.held < 0 {
		panic("released more than reserved")
	}
}

func (sp *testSpan) Done() {
	s := sp.scope
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp.done {
		panic("Done twice")
	}
	sp.done, sp.heldAtDone = true, sp.held
}

func (sp *testSpan) Stat() network.ScopeStat                       { return network.ScopeStat{} }
func (sp *testSpan) BeginSpan() (network.ResourceScopeSpan, error) { panic("nested span") }

// muxedPair returns a client and a server MuxedConn over loopback TCP,
// closed when the test ends. It makes the connection itself, like the
// tcpPair of the root and interop modules' tests: test helpers cannot be
// shared across modules.
func muxedPair(t *testing.T, cscope, sscope *testScope) (client, server network.MuxedConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	if client, err = DefaultTransport.NewConn(c, false, asScope(cscope)); err != nil {
		t.Fatal(err)
	}
	if server, err = DefaultTransport.NewConn(s, true, asScope(sscope)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// asScope passes a nil *testScope as a nil interface, as go-libp2p passes
// no scope.
func asScope(s *testScope) network.PeerScope {
	if s == nil {
		return nil
	}
	return s
}

func streamPair(t *testing.T, a, b network.MuxedConn) (network.MuxedStream, network.MuxedStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sa, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	// One byte each way through the new stream proves it is up.
	if _, err := sa.Write([]byte{1}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	sb, err := b.AcceptStream()
	if err != nil {
		t.Fatalf("AcceptStream: %v", err)
	}
	if _, err := io.ReadFull(sb, make([]byte, 1)); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return sa, sb
}

// TestScopeBalanced: windows are reserved through a span per connection
// (initial windows at priority 255), everything is released by the time
// the connection is closed, and the span then ends, once.
func TestScopeBalanced(t *testing.T) {
	cs, ss := &testScope{}, &testScope{}
	client, server := muxedPair(t, cs, ss)
	for range 5 {
		a, b := streamPair(t, client, server)
		a.CloseWrite()
		b.Close()
		a.Close()
	}
	a, b := streamPair(t, client, server)
	a.Reset()
	b.Read(make([]byte, 1))
	streamPair(t, client, server) // left open
	client.Close()
	client.Close() // a second Close must not end the span again
	server.Close()
	cs.check(t)
	ss.check(t)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.spans) != 1 || cs.prios[255] < 7 || cs.released == 0 {
		t.Errorf("client scope: %d spans, %d initial reservations, %d bytes released; want 1, at least 7, some",
			len(cs.spans), cs.prios[255], cs.released)
	}
}

// TestScopeRefusalResetsTheStream: a scope that refuses memory refuses the
// stream, not the connection.
func TestScopeRefusalResetsTheStream(t *testing.T) {
	ss := &testScope{}
	client, server := muxedPair(t, nil, ss)
	ss.setRefuse(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("x"))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
		t.Fatalf("Read on a refused stream = %v; want network.ErrReset", err)
	}
	ss.setRefuse(false)
	streamPair(t, client, server) // the connection still works
	if client.IsClosed() || server.IsClosed() {
		t.Fatal("a refused stream closed the connection")
	}
}

// TestResetWithErrorCodes: the code crosses in the RST; both ends see a
// *network.StreamError that matches network.ErrReset.
func TestResetWithErrorCodes(t *testing.T) {
	client, server := muxedPair(t, nil, nil)
	a, b := streamPair(t, client, server)
	a.ResetWithError(network.StreamProtocolViolation)
	var se *network.StreamError
	_, err := b.Read(make([]byte, 1))
	if !errors.As(err, &se) || se.ErrorCode != network.StreamProtocolViolation || !se.Remote || !errors.Is(err, network.ErrReset) {
		t.Errorf("peer's Read = %v; want a remote StreamError with code %#x, matching ErrReset", err, network.StreamProtocolViolation)
	}
	if !errors.Is(err, yamux.ErrStreamReset) {
		t.Errorf("peer's Read = %v; want the library's ErrStreamReset in the chain", err)
	}
	_, err = a.Write([]byte("x"))
	if !errors.As(err, &se) || se.ErrorCode != network.StreamProtocolViolation || se.Remote {
		t.Errorf("our Write = %v; want a local StreamError with the code", err)
	}

	a, b = streamPair(t, client, server)
	a.Reset()
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) || errors.As(err, &se) {
		t.Errorf("peer's Read after a plain Reset = %v; want network.ErrReset without a code", err)
	}
}

// TestCloseWithErrorCode: the code crosses in the GoAway; the peer's
// streams and AcceptStream see a *network.ConnError with it.
func TestCloseWithErrorCode(t *testing.T) {
	client, server := muxedPair(t, nil, nil)
	_, b := streamPair(t, client, server)
	client.CloseWithError(network.ConnGarbageCollected)
	if !client.IsClosed() {
		t.Error("IsClosed() = false after CloseWithError")
	}
	var ce *network.ConnError
	_, err := b.Read(make([]byte, 1))
	if !errors.As(err, &ce) || ce.ErrorCode != network.ConnGarbageCollected || !ce.Remote || !errors.Is(err, network.ErrReset) {
		t.Errorf("peer's Read = %v; want a remote ConnError with code %#x, matching ErrReset", err, network.ConnGarbageCollected)
	}
	if _, err := server.AcceptStream(); !errors.As(err, &ce) || ce.ErrorCode != network.ConnGarbageCollected {
		t.Errorf("peer's AcceptStream = %v; want the ConnError", err)
	}
}

// TestStreamOfClosedConnIsReset: a stream cut off by the end of its
// connection reports network.ErrReset, as go-libp2p expects.
func TestStreamOfClosedConnIsReset(t *testing.T) {
	client, server := muxedPair(t, nil, nil)
	a, _ := streamPair(t, client, server)
	server.Close()
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
		t.Errorf("Read after the peer closed = %v; want network.ErrReset", err)
	}
}

func TestAs(t *testing.T) {
	client, _ := muxedPair(t, nil, nil)
	var sess *yamux.Session
	if !client.As(&sess) || sess == nil || !sess.IsClient() {
		t.Fatalf("As(**yamux.Session) = %v, %v; want the client session", sess != nil, sess)
	}
	var other *net.TCPConn
	if client.As(&other) {
		t.Error("As(**net.TCPConn) = true; want false")
	}
}

func TestDeadline(t *testing.T) {
	client, server := muxedPair(t, nil, nil)
	a, _ := streamPair(t, client, server)
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Read past the deadline = %v; want a timeout net.Error", err)
	}
}
