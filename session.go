// Package yamux multiplexes many reliable, ordered, flow-controlled streams
// over one connection, speaking the yamux wire protocol of HashiCorp's
// implementation (described in our own words, with every ambiguity of the
// original resolved, in spec.md). It interoperates with hashicorp/yamux,
// libp2p/go-yamux and js-libp2p's @chainsafe/libp2p-yamux (interop/).
//
// A [Session] wraps any [io.ReadWriteCloser], usually a [net.Conn]: one end
// is the [Client] (odd stream IDs), the other the [Server] (even IDs).
// Either end opens streams with [Session.OpenStream] and the other receives
// them from [Session.AcceptStream]. A [Stream] is a [net.Conn] with
// half-close ([Stream.CloseWrite]), reset ([Stream.Reset]) and deadlines. A
// Session is also a [net.Listener], so http.Serve(session, handler) works.
//
// Goroutines: a session runs one goroutine that reads the connection (the
// receive loop) and, only while it sends, one that writes it (the send
// loop, which exits 100 to 200 ms after its last write — up to 4 s for a
// session whose writes come back within 2 s of going quiet — and is
// started again by the next frame); keepalive and the stream timers are
// timers, not goroutines, and there is no goroutine per stream.
// [Session.Close] waits for both. Every method of Session and Stream is safe for
// concurrent use.
//
// What an idle session holds, for sizing a server (measured with 10 idle
// streams per session, bench/README.md): the receive loop's stack (2 to 4
// KB; after a burst in which every session sent at once, the runtime may
// keep some more stack memory it cannot give back), about 5 KB of heap
// (the Session with 256 bytes of inline read buffer, its stream table, the
// TCP connection's own state), a stopped timer or two, and about 300 bytes
// per idle stream; no read or write buffer. A session that moves data
// takes a 16 KiB read buffer and a write batch buffer (64 KiB, more for a
// batch of many small frames) from process-wide pools and gives them back
// when it goes idle; received data waits in pooled blocks that go back as
// the application reads.
//
// A peer that breaks the protocol gets GoAway(protocol error) and the
// session ends with an error wrapping [ErrProtocol]; a peer can never make
// this package panic, block forever, or buffer more than the windows it was
// granted.
//
// Around the session: [Session.Shutdown] drains it gracefully, and
// [Session.State], [Session.Draining] and [Session.Err] tell where it is and
// why it ended; [SessionServer] serves a listener with a session per
// connection, [Pool] keeps one client session per address, [Router]
// dispatches streams by name (spec.md §9), and Stats on sessions and
// streams count what went through. Limits against hostile peers are all in
// [Config] (spec.md §8 lists the answer to every bad input).
package yamux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Session is one end of a multiplexed connection. Create it with [Client],
// [Server] or [NewSession].
//
// Ownership:
//   - immutable after NewSession: conn, cfg, client, logger, vectored, and
//     every channel but drainingCh and idleCh (made when first needed,
//     under mu);
//   - owned by the receive loop, no lock: rd and scratch;
//   - owned by the send loop, no lock: writeDeadline, quarterBytes,
//     stallStart and the batch;
//   - atomics: closed, rtt, budget, nstreams, stats (standalone facts;
//     nstreams is written under mu, beside the streams map it counts);
//   - sq has its own lock (sendqueue.go);
//   - guarded by mu: everything below it.
//
// Locks, and every nesting there is (the arrow reads "is held while
// taking"):
//   - Session.openMu orders ID allocation with the SYN's place in the send
//     queue: openMu → Session.mu (allocating), then openMu → Stream.mu →
//     sendQueue.mu (listing the SYN).
//   - Stream.writeMu serialises Writes: writeMu → Stream.mu.
//   - Stream.mu guards one stream's state: Stream.mu → sendQueue.mu, when a
//     transition queues a frame (the queue's order is then the order of the
//     stream's transitions).
//   - Session.mu → sendQueue.mu, when a ping is queued (startPingLocked,
//     the keepalive timer).
//   - Stream.writeMu → Session.mu (a Write reading the session's error),
//     and connOnce → Session.mu (closeConn stopping the close timer).
//   - sendQueue.mu is a leaf: nothing is taken while it is held.
//   - Session.mu and Stream.mu are never held together, in either order:
//     decide under one, release it, then take the other.
//
// No lock is held across connection I/O, a channel wait, or a user
// callback, with one documented exception: Config.MemoryManager is called
// under Session.mu or Stream.mu and must not block.
type Session struct {
	conn     io.ReadWriteCloser
	cfg      Config
	client   bool
	logger   *slog.Logger
	vectored bool // conn supports writev through net.Buffers
	// stickyWrites: a write that hits a deadline breaks conn for good
	// (TLS), so the send loop never lets one fire mid-write (writeConn).
	stickyWrites bool

	rd      *connReader // receive loop only
	scratch []chunk     // receive loop only: payload of the frame being read

	writeDeadline time.Time // send loop only: the connection's write deadline
	quarterBytes  int64     // send loop only: bytes written since writeDeadline was armed
	stallStart    time.Time // send loop only: since when writes are stalled (zero: they move)

	sq          sendQueue     // any goroutine -> send loop; never blocks a producer
	acceptReady chan struct{} // 1-buffered: accepts became non-empty
	synSem      chan struct{} // one token per stream we opened that awaits its ACK
	frames      framePool

	openMu sync.Mutex // orders OpenStream's ID allocation with its SYN's enqueue

	doneCh     chan struct{} // closed once by shutdown
	drainingCh chan struct{} // guarded by mu, made by Draining: closed once, when a GoAway is sent or received, or at shutdown
	sendDone   chan struct{} // closed when the send loop has returned
	recvDone   chan struct{} // closed when the receive loop has returned
	idleCh     chan struct{} // guarded by mu, made by Shutdown: 1-buffered, the stream table became empty
	wg         sync.WaitGroup
	connOnce   sync.Once

	closed    atomic.Bool  // mirrors err != nil, for lock-free fast paths
	interrupt atomic.Bool  // a writer asked the send loop's write to return (interruptWrite)
	rtt       atomic.Int64 // last measured ping round trip, in nanoseconds
	budget    atomic.Int64 // receive window bytes still unreserved (MaxReceiveBuffer)
	nstreams  atomic.Int64 // len(streams), for growthCap without mu
	grown     atomic.Int64 // window bytes granted by growth beyond initial windows (reserveGrowth)
	stats     sessionCounters

	mu             sync.Mutex
	streams        map[uint32]*Stream
	nextID         uint64    // next ID we open; > MaxUint32 means exhausted
	lastRemoteID   uint32    // highest ID the peer has opened
	incoming       int       // live streams the peer opened
	accepts        []*Stream // streams the peer opened, not yet accepted: accepts[acceptHead:]
	acceptHead     int
	localGoAway    bool
	remoteGoAway   *GoAwayError
	finalGoAway    *GoAwayCode             // GoAway the send loop writes last, if any
	draining       bool                    // set once: drainingCh, if made, is closed; Draining returns a closed channel
	pings          map[uint32]*pendingPing // nil while none awaits its answer
	nextPing       uint32
	closeTimer     *time.Timer
	keepaliveTimer *time.Timer  // nil without keepalive
	keepalivePing  *pendingPing // the keepalive ping awaiting its answer
	rttProbed      bool         // the first stream's ping, which measures the round trip, was sent
	err            error        // why the session ended; set once, before doneCh closes
}

var _ net.Listener = (*Session)(nil)

// discardLogger is every session's logger when Config.Logger is nil.
var discardLogger = slog.New(slog.DiscardHandler)

// Client returns the client end of a session over conn. A nil cfg means
// [DefaultConfig]; cfg is copied. It returns an error wrapping
// [ErrInvalidConfig] for a bad config.
func Client(conn io.ReadWriteCloser, cfg *Config) (*Session, error) {
	return NewSession(conn, true, cfg)
}

// Server returns the server end of a session over conn. See [Client].
func Server(conn io.ReadWriteCloser, cfg *Config) (*Session, error) {
	return NewSession(conn, false, cfg)
}

// NewSession starts a session over conn; client selects the role (odd
// stream IDs and the client side of the protocol). A nil cfg means
// [DefaultConfig]; cfg is copied. It does not block and does no I/O itself:
// the session's goroutines start here and run until [Session.Close] or
// until the connection fails. From then on the session owns conn and
// closes it; if NewSession returns an error, conn is untouched and the
// caller must close it.
func NewSession(conn io.ReadWriteCloser, client bool, cfg *Config) (*Session, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalidConfig)
	}
	s := &Session{
		conn:        conn,
		cfg:         *cfg,
		client:      client,
		logger:      cfg.Logger,
		rd:          newConnReader(conn),
		acceptReady: make(chan struct{}, 1),
		synSem:      make(chan struct{}, cfg.AcceptBacklog),
		doneCh:      make(chan struct{}),
		sendDone:    make(chan struct{}),
		recvDone:    make(chan struct{}),
		streams:     make(map[uint32]*Stream),
	}
	if s.logger == nil {
		s.logger = discardLogger
	}
	s.sq.init(s.startSendLoop)
	s.budget.Store(int64(cfg.MaxReceiveBuffer))
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
		s.vectored = true
	}
	if _, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		s.stickyWrites = true // *tls.Conn, and wrappers that say they are TLS
	}
	if client {
		s.nextID = 1
	} else {
		s.nextID = 2
	}
	s.wg.Add(2) // the receive loop, and the send loop's final run
	go s.recvLoop()
	if s.cfg.EnableKeepAlive {
		s.startKeepalive()
	}
	return s, nil
}

// startSendLoop starts a send loop run (sendQueue.unlockAndKick).
func (s *Session) startSendLoop() { go s.sendLoop() }

// IsClient reports whether this is the client end (odd stream IDs).
func (s *Session) IsClient() bool { return s.client }

// OpenStream opens a new stream. It queues the SYN and returns without
// waiting for the peer's ACK, so the caller can write at once; it blocks
// only while AcceptBacklog of our streams await their ACK. It returns
// ctx.Err(), [ErrSessionShutdown], [ErrLocalGoAway], an error matching
// [ErrRemoteGoAway], [ErrStreamsExhausted], or [ErrReceiveBufferFull] when
// the stream's receive window does not fit the MaxReceiveBuffer budget.
func (s *Session) OpenStream(ctx context.Context) (*Stream, error) {
	select {
	case s.synSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.doneCh:
		return nil, s.Err()
	}
	// openMu keeps ID allocation and the SYN's place in the queue in one
	// order, so that our SYNs reach the wire with increasing IDs.
	s.openMu.Lock()
	st, err := s.newOutgoingStream()
	if err != nil {
		s.openMu.Unlock()
		<-s.synSem
		return nil, err
	}
	// The SYN is not waited for: the send loop writes control frames
	// before data in each batch, so it precedes the stream's data.
	st.mu.Lock()
	st.queueOpenLocked(flagSYN)
	st.mu.Unlock()
	s.openMu.Unlock()
	st.startOpenTimer()
	s.stats.streamsOpened.Add(1)
	return st, nil
}

func (s *Session) newOutgoingStream() (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return nil, sessionError(s.err)
	case s.localGoAway:
		return nil, ErrLocalGoAway
	case s.remoteGoAway != nil:
		return nil, s.remoteGoAway
	case s.nextID > math.MaxUint32:
		return nil, ErrStreamsExhausted
	}
	if err := s.reserveInitial(s.cfg.InitialStreamWindowSize); err != nil {
		return nil, err
	}
	s.probeRTTLocked()
	id := uint32(s.nextID)
	s.nextID += 2
	st := newStream(s, id, true)
	s.streams[id] = st
	s.nstreams.Add(1)
	return st, nil
}

// AcceptStream blocks until the peer opens a stream, ctx ends, or the
// session ends. It sends the stream's ACK before returning it. It returns
// ctx.Err() or an error wrapping [ErrSessionShutdown].
func (s *Session) AcceptStream(ctx context.Context) (*Stream, error) {
	var st *Stream
	for st == nil {
		s.mu.Lock()
		if s.err != nil { // an ended session accepts nothing, queued or not
			s.mu.Unlock()
			return nil, s.Err()
		}
		st = s.popAcceptLocked()
		if st != nil {
			s.probeRTTLocked()
		}
		more := s.acceptHead < len(s.accepts)
		s.mu.Unlock()
		if st != nil {
			if more { // pass the wake-up on to another waiting AcceptStream
				select {
				case s.acceptReady <- struct{}{}:
				default:
				}
			}
			break
		}
		select {
		case <-s.acceptReady:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.doneCh:
			return nil, s.Err()
		}
	}
	s.stats.streamsAccepted.Add(1)
	// A stream the peer reset while it waited in the backlog gets no ACK
	// (it would only name a stream the peer has forgotten), but the user
	// still gets it: it may hold data and a FIN.
	st.accept()
	return st, nil
}

// probeRTTLocked sends, with the first stream opened or accepted, one
// ping that measures the round trip window auto-tuning needs (nobody waits
// for it). A session without streams never needs it, and setting up one
// costs no frames. Call with s.mu held.
func (s *Session) probeRTTLocked() {
	if !s.rttProbed {
		s.rttProbed = true
		s.startPingLocked()
	}
}

// popAcceptLocked takes the oldest stream waiting to be accepted, or nil.
// Call with s.mu held.
func (s *Session) popAcceptLocked() *Stream {
	if s.acceptHead == len(s.accepts) {
		return nil
	}
	st := s.accepts[s.acceptHead]
	s.accepts[s.acceptHead] = nil
	s.acceptHead++
	if s.acceptHead == len(s.accepts) {
		s.accepts, s.acceptHead = s.accepts[:0], 0
		if cap(s.accepts) > 64 {
			s.accepts = nil // a burst is over: do not keep its room
		}
	}
	return st
}

// DialContext opens a stream as a net.Conn, ignoring network and address:
// the session is the connection. Its signature fits
// http.Transport.DialContext and gRPC's dialer. It returns a nil interface
// (never a nil *Stream) with an error.
func (s *Session) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Conn returns the connection the session runs over, for what the session
// does not expose (its type, a TLS state beyond [Session.ConnectionState]).
// Reading or writing it breaks the session.
func (s *Session) Conn() io.ReadWriteCloser { return s.conn }

// Open is OpenStream without a context, returning a net.Conn.
func (s *Session) Open() (net.Conn, error) {
	st, err := s.OpenStream(context.Background())
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Accept is AcceptStream without a context, returning a net.Conn. With
// [Session.Addr] and [Session.Close] it makes a Session a net.Listener.
func (s *Session) Accept() (net.Conn, error) {
	st, err := s.AcceptStream(context.Background())
	if err != nil {
		return nil, err
	}
	return st, nil
}

// NumStreams returns the number of streams the session tracks: open, or
// closed by one end and waiting for the other.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Done returns a channel that is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.doneCh }

// IsClosed reports whether the session has ended.
func (s *Session) IsClosed() bool { return s.closed.Load() }

// Err returns nil while the session is open. After it ended it returns an
// error wrapping [ErrSessionShutdown] and the cause: [ErrProtocol] (we
// detected a violation), a [*GoAwayError] (the peer sent a GoAway with an
// error code), [ErrKeepAliveTimeout], [ErrConnectionWriteTimeout], or the
// connection's own error.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return nil
	}
	return sessionError(s.err)
}

// Close ends the session and returns within closeFlushLimit (50 ms),
// whatever the peer does. It stops new streams and fails blocked and later
// calls on the session and its streams with [ErrSessionShutdown]; the send
// loop writes what is already queued (our FINs among it) followed by
// GoAway(normal), half-closes the connection (when it can, as TCP does)
// and waits for the peer to close its side, so that a peer that is reading
// gets all of it without a TCP reset racing it. When closeFlushLimit
// passes first, the connection is closed as it is: a peer that does not
// read loses what did not fit, and sees the session end with an error, not
// a clean end. Close then waits for every goroutine of the session. It is
// idempotent and always returns nil.
func (s *Session) Close() error {
	s.shutdown(ErrLocalClose, GoAwayNormal, true)
	s.wg.Wait()
	return nil
}

// closeFlushLimit bounds how long a closing session may spend writing what
// was queued and waiting for the peer's end of the connection: Close never
// waits longer on the peer.
const closeFlushLimit = 50 * time.Millisecond

// shutdown ends the session once, for cause. With sendGoAway, the send loop
// writes GoAway(code) after the frames already queued. It does not wait:
// any goroutine, including the loops, may call it.
func (s *Session) shutdown(cause error, code GoAwayCode, sendGoAway bool) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = cause
	if sendGoAway && !(s.localGoAway && code == GoAwayNormal) {
		s.finalGoAway = &code
	}
	s.setDrainingLocked()
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	clear(s.streams)
	s.nstreams.Store(0)
	clear(s.accepts)
	s.accepts, s.acceptHead = nil, 0
	if s.keepaliveTimer != nil {
		s.keepaliveTimer.Stop()
	}
	for id, p := range s.pings {
		close(p.done)
		delete(s.pings, id)
	}
	s.closeTimer = time.AfterFunc(min(s.cfg.ConnectionWriteTimeout, closeFlushLimit), s.closeConn)
	s.mu.Unlock()

	s.closed.Store(true)
	close(s.doneCh)
	s.sq.kick() // the final run, if no run is going to see doneCh
	if cause != ErrLocalClose {
		level := slog.LevelWarn
		if errors.Is(cause, io.ErrUnexpectedEOF) {
			level = slog.LevelDebug
		}
		s.logger.Log(context.Background(), level, "yamux: session ended", "err", cause)
	}
	err := sessionError(cause)
	for _, st := range streams {
		st.abort(err)
	}
	s.releaseAborted(streams)
}

// closeConn closes the connection once; the send loop calls it when its
// final flush is done, closeTimer when the flush takes too long.
func (s *Session) closeConn() {
	s.connOnce.Do(func() {
		if nc, ok := s.conn.(interface{ NetConn() net.Conn }); ok {
			// TLS: its Close would first send close_notify, waiting up
			// to 5 s behind a blocked write; our goodbye is the GoAway,
			// so close the connection under it at once.
			nc.NetConn().Close()
		}
		s.conn.Close()
		s.mu.Lock()
		if s.closeTimer != nil {
			s.closeTimer.Stop()
		}
		s.mu.Unlock()
	})
}

// Addr returns the connection's local address, or a placeholder when the
// connection has none. It completes net.Listener.
func (s *Session) Addr() net.Addr { return s.LocalAddr() }

// LocalAddr returns the connection's local address if it has one.
func (s *Session) LocalAddr() net.Addr {
	if c, ok := s.conn.(interface{ LocalAddr() net.Addr }); ok {
		return c.LocalAddr()
	}
	return sessionAddr{}
}

// RemoteAddr returns the connection's remote address if it has one.
func (s *Session) RemoteAddr() net.Addr {
	if c, ok := s.conn.(interface{ RemoteAddr() net.Addr }); ok {
		return c.RemoteAddr()
	}
	return sessionAddr{}
}

type sessionAddr struct{}

func (sessionAddr) Network() string { return "yamux" }
func (sessionAddr) String() string  { return "yamux" }

// forgetStream removes st from the stream table and returns its SYN token
// if it still held one. Safe to call more than once.
func (s *Session) forgetStream(st *Stream) {
	s.mu.Lock()
	if s.streams[st.id] != st {
		s.mu.Unlock()
		return
	}
	delete(s.streams, st.id)
	s.nstreams.Add(-1)
	if !st.opened {
		s.incoming--
	}
	var idle chan struct{}
	if len(s.streams) == 0 {
		idle = s.idleCh // nil unless Shutdown waits
	}
	s.mu.Unlock()
	if idle != nil {
		select {
		case idle <- struct{}{}:
		default:
		}
	}
	st.mu.Lock()
	window := st.in.size
	token := st.synToken
	st.synToken = false
	st.mu.Unlock()
	s.grown.Add(-int64(window - s.cfg.InitialStreamWindowSize))
	s.releaseWindow(window)
	if token {
		<-s.synSem
	}
}

// reserve takes n bytes from the MaxReceiveBuffer budget, or reports that
// there is not enough left. With release, it makes the session the budget
// of its streams' receive windows (flow.go).
func (s *Session) reserve(n uint32) bool {
	for {
		left := s.budget.Load()
		if left < int64(n) {
			return false
		}
		if s.budget.CompareAndSwap(left, left-int64(n)) {
			return true
		}
	}
}

// reserveGrowth takes n bytes of the growth allowance, half of
// MaxReceiveBuffer for the growth of all streams together, or reports that
// there is not enough left: the other half always stays for the initial
// windows of the streams opened next.
func (s *Session) reserveGrowth(n uint32) bool {
	limit := int64(s.cfg.MaxReceiveBuffer / 2)
	for {
		g := s.grown.Load()
		if g+int64(n) > limit {
			return false
		}
		if s.grown.CompareAndSwap(g, g+int64(n)) {
			return true
		}
	}
}

// release gives n bytes back to the MaxReceiveBuffer budget.
func (s *Session) release(n uint32) { s.budget.Add(int64(n)) }

// growthCap is the largest receive window a stream may grow to now:
// MaxStreamWindowSize, and no more than an equal share of half the
// MaxReceiveBuffer among the streams open now. A lone stream on a long
// fat path may so use half the session's budget (spec.md §4), and streams
// that grow at once get equal windows. Windows do not shrink, so the share
// alone would let streams that grew one after another take the whole
// budget; reserveGrowth bounds their sum.
func (s *Session) growthCap() uint32 {
	share := s.cfg.MaxReceiveBuffer / 2 / uint64(max(1, s.nstreams.Load()))
	return uint32(min(uint64(s.cfg.MaxStreamWindowSize), share))
}
