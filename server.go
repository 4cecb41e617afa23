package yamux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds SessionServer, the session-level counterpart of
// http.Server: accept connections, make each a server Session, hand each
// stream to a StreamHandler, and drain everything on Shutdown. It only uses
// the exported Session API and does not change the wire protocol.
//
// The name: the package already has the function Server(conn, cfg), which
// makes one server-side Session; a type cannot share it. SessionServer says
// what the type serves (sessions, as http.Server serves HTTP), and a
// "Listener" would be confused with net.Listener, which Session already is.

// ErrServerClosed is returned by [SessionServer.Serve] after
// [SessionServer.Shutdown] or [SessionServer.Close], like
// http.ErrServerClosed.
var ErrServerClosed = errors.New("yamux: server closed")

// StreamHandler serves one stream that a peer opened. ServeStream may block
// for as long as the stream is in use; when it returns, the caller (a
// [SessionServer]) closes the stream, so a handler must not return while
// another goroutine still uses it.
type StreamHandler interface {
	ServeStream(st *Stream)
}

// StreamHandlerFunc adapts an ordinary function to a [StreamHandler], like
// http.HandlerFunc.
type StreamHandlerFunc func(st *Stream)

// ServeStream calls f(st).
func (f StreamHandlerFunc) ServeStream(st *Stream) { f(st) }

var _ StreamHandler = StreamHandlerFunc(nil)

// defaultHandshakeTimeout is SessionServer.HandshakeTimeout when zero.
const defaultHandshakeTimeout = 10 * time.Second

// SessionServer serves multiplexed connections the way http.Server serves
// HTTP: [SessionServer.Serve] accepts connections from a [net.Listener],
// optionally runs a TLS handshake on each, wraps each in a server-side
// [Session], and hands every stream the peer opens to Handler.
//
// Goroutines: one per connection (the TLS handshake, then the session's
// accept loop) and one per accepted stream, which runs
// Handler.ServeStream, so handlers run concurrently, as net/http's do; the
// session adds its own (see [Session]). A Session alone has no goroutine
// per stream: a goroutine per stream is the choice a user makes by using
// SessionServer, and one who wants another model (a worker pool, or
// serving streams one after another) loops on [Session.AcceptStream]
// instead. Live handlers are bounded by MaxSessions times
// Config.MaxIncomingStreams (roughly: a handler that outlives its stream
// no longer counts against the stream limit). Shutdown and Close wait for
// every goroutine the server started, handlers included, so a handler must
// return once its stream fails. A handler that panics crashes the program:
// nothing is recovered.
//
// Set the fields before the first call to Serve and do not change them
// afterwards. The methods are safe for concurrent use. The zero value, with
// Handler set, is ready to use.
type SessionServer struct {
	// Handler serves every accepted stream. Required: Serve returns an
	// error wrapping [ErrInvalidConfig] when it is nil. A [*Router]
	// dispatches streams by name.
	Handler StreamHandler

	// Config configures every session; nil means [DefaultConfig]. It is
	// checked by Serve with [VerifyConfig]. Its Logger also receives the
	// server's own messages (rejected connections at Info, failed
	// handshakes at Debug).
	Config *Config

	// TLSConfig, when not nil, makes Serve run a TLS server handshake on
	// every accepted connection before the session starts; the session
	// then runs over the *tls.Conn and [Session.ConnectionState] reports
	// the peer's identity. It must hold a certificate (Certificates or
	// GetCertificate).
	TLSConfig *tls.Config

	// HandshakeTimeout bounds each TLS handshake; a connection that has
	// not completed it in time is closed and counted in
	// ServerStats.HandshakeErrors. Used only with TLSConfig. Zero means
	// 10s; negative means no limit.
	HandshakeTimeout time.Duration

	// MaxSessions caps the connections served at once, counting those
	// still in their TLS handshake. A connection accepted beyond it is
	// closed at once, before any byte is read or written, and counted in
	// ServerStats.Rejected. Zero means no limit; negative is invalid.
	MaxSessions int

	// OnSessionStart, if set, is called with each new session, on that
	// session's goroutine, before its first stream is accepted; the
	// session is already counted by NumSessions. It may inspect the
	// session (e.g. [Session.ConnectionState]) and close it to refuse the
	// peer. Streams of this session wait until it returns.
	OnSessionStart func(s *Session)

	// OnSessionEnd, if set, is called once for each session that
	// OnSessionStart saw, after the session has ended, all its handlers
	// have returned, and it has left the registry. [Session.Err] says why
	// it ended.
	OnSessionEnd func(s *Session)

	mu        sync.Mutex
	closing   bool                       // Shutdown or Close began: no new sessions
	ctx       context.Context            // canceled when closing is set; bounds handshakes
	cancel    context.CancelFunc         // cancels ctx
	listeners map[*net.Listener]struct{} // being served
	sessions  map[*Session]struct{}      // the registry: live, registered sessions
	slots     int                        // connections holding a MaxSessions slot
	wg        sync.WaitGroup             // every goroutine the server started

	served     atomic.Uint64
	rejected   atomic.Uint64
	handshakes atomic.Uint64 // failed handshakes
}

// ServerStats is a snapshot of a [SessionServer]'s counters. Per-session
// counters are in [Session.Stats]; iterate over [SessionServer.Sessions] to
// read them.
type ServerStats struct {
	Sessions        int    // sessions live now (NumSessions)
	Connections     int    // connections holding a MaxSessions slot: live sessions plus handshakes in progress
	SessionsServed  uint64 // sessions started since the server was created
	Rejected        uint64 // connections closed because MaxSessions was reached
	HandshakeErrors uint64 // connections closed because their TLS handshake failed or timed out
}

// initLocked prepares the zero value. Call with srv.mu held.
func (srv *SessionServer) initLocked() {
	if srv.ctx == nil {
		srv.ctx, srv.cancel = context.WithCancel(context.Background())
		srv.listeners = make(map[*net.Listener]struct{})
		srv.sessions = make(map[*Session]struct{})
	}
}

func (srv *SessionServer) verify() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: SessionServer: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case srv.Handler == nil:
		return bad("nil Handler")
	case srv.MaxSessions < 0:
		return bad("MaxSessions %d is negative", srv.MaxSessions)
	case srv.Config != nil:
		return VerifyConfig(srv.Config)
	}
	return nil
}

func (srv *SessionServer) logger() *slog.Logger {
	if srv.Config != nil && srv.Config.Logger != nil {
		return srv.Config.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on ln and serves each on its own goroutine
// until ln fails or the server is shut down. It blocks, and always returns
// a non-nil error and closes ln: [ErrServerClosed] after
// [SessionServer.Shutdown] or [SessionServer.Close], an error wrapping
// [ErrInvalidConfig] when a field is invalid, or the error of ln.Accept.
// Accept errors that report Temporary() true are retried after a pause of
// 5ms, doubling up to 1s, as net/http does. Serve may be called several
// times, concurrently, with different listeners.
func (srv *SessionServer) Serve(ln net.Listener) error {
	ln = &onceCloseListener{Listener: ln}
	defer ln.Close()
	if err := srv.verify(); err != nil {
		return err
	}
	srv.mu.Lock()
	srv.initLocked()
	if srv.closing {
		srv.mu.Unlock()
		return ErrServerClosed
	}
	srv.listeners[&ln] = struct{}{}
	ctx := srv.ctx
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, &ln)
		srv.mu.Unlock()
	}()

	var pause time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				return err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			srv.logger().Warn("yamux: accept failed; retrying", "err", err, "pause", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		pause = 0
		if srv.admit(conn) {
			go srv.serveConn(ctx, conn)
		}
	}
}

// admit takes a MaxSessions slot for conn and counts the goroutine that
// will serve it, or closes conn when there is no slot or the server is
// closing.
func (srv *SessionServer) admit(conn net.Conn) bool {
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		conn.Close()
		return false
	}
	if srv.MaxSessions > 0 && srv.slots >= srv.MaxSessions {
		srv.mu.Unlock()
		srv.rejected.Add(1)
		srv.logger().Info("yamux: MaxSessions reached; closing connection", "remote", conn.RemoteAddr(), "max", srv.MaxSessions)
		conn.Close()
		return false
	}
	srv.slots++
	// Added under mu while !closing: Shutdown and Close set closing under
	// mu before they Wait, so no Add can race their Wait.
	srv.wg.Add(1)
	srv.mu.Unlock()
	return true
}

// serveConn runs one connection: handshake, session, accept loop, and the
// cleanup once the session has ended. ctx is canceled by Shutdown and Close.
func (srv *SessionServer) serveConn(ctx context.Context, conn net.Conn) {
	defer srv.wg.Done()
	sess := srv.startSession(ctx, conn)
	if sess == nil {
		srv.mu.Lock()
		srv.slots--
		srv.mu.Unlock()
		return
	}
	srv.served.Add(1)
	if srv.OnSessionStart != nil {
		srv.OnSessionStart(sess)
	}

	var handlers sync.WaitGroup
	for {
		st, err := sess.AcceptStream(context.Background())
		if err != nil {
			break // the session has ended
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			srv.Handler.ServeStream(st)
			st.Close()
		}()
	}
	handlers.Wait()
	sess.Close() // waits for the session's own goroutines
	// Leave the registry and free the slot before OnSessionEnd, so that a
	// new connection is admitted once the hook has been called.
	srv.mu.Lock()
	delete(srv.sessions, sess)
	srv.slots--
	srv.mu.Unlock()
	if srv.OnSessionEnd != nil {
		srv.OnSessionEnd(sess)
	}
}

// startSession runs the TLS handshake, if any, and starts and registers
// the session. It returns nil, with conn closed, when the handshake fails
// or the server is closing.
func (srv *SessionServer) startSession(ctx context.Context, conn net.Conn) *Session {
	if srv.TLSConfig != nil {
		tc := tls.Server(conn, srv.TLSConfig)
		hctx, cancel := context.WithCancel(ctx)
		if timeout := timeoutOr(srv.HandshakeTimeout, defaultHandshakeTimeout); timeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, timeout)
		}
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			srv.handshakes.Add(1)
			srv.logger().Debug("yamux: TLS handshake failed", "remote", conn.RemoteAddr(), "err", err)
			conn.Close()
			return nil
		}
		conn = tc
	}
	sess, err := Server(conn, srv.Config)
	if err != nil { // cannot happen: Serve verified the config
		conn.Close()
		return nil
	}
	srv.mu.Lock()
	closing := srv.closing
	if !closing {
		srv.sessions[sess] = struct{}{}
	}
	srv.mu.Unlock()
	if closing {
		sess.Close()
		return nil
	}
	return sess
}

// NumSessions returns the number of live sessions: started, and not yet
// ended with all their handlers returned. It does not block.
func (srv *SessionServer) NumSessions() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

// Sessions returns an iterator over the live sessions, in no particular
// order: a snapshot taken when iteration starts, so a session may end while
// the loop body runs. No lock is held while the body runs; it may call any
// method of the server or the session, e.g. [Session.Stats] or
// [Session.Close].
//
//	for s := range srv.Sessions() {
//		log.Println(s.RemoteAddr(), s.Stats().ActiveStreams)
//	}
func (srv *SessionServer) Sessions() iter.Seq[*Session] {
	return func(yield func(*Session) bool) {
		srv.mu.Lock()
		list := make([]*Session, 0, len(srv.sessions))
		for s := range srv.sessions {
			list = append(list, s)
		}
		srv.mu.Unlock()
		for _, s := range list {
			if !yield(s) {
				return
			}
		}
	}
}

// Stats returns a snapshot of the server's counters. It does not block.
func (srv *SessionServer) Stats() ServerStats {
	srv.mu.Lock()
	st := ServerStats{Sessions: len(srv.sessions), Connections: srv.slots}
	srv.mu.Unlock()
	st.SessionsServed = srv.served.Load()
	st.Rejected = srv.rejected.Load()
	st.HandshakeErrors = srv.handshakes.Load()
	return st
}

// beginClose stops the server from accepting, once or again, and returns
// what must be closed or drained.
func (srv *SessionServer) beginClose() ([]*Session, error) {
	srv.mu.Lock()
	srv.initLocked()
	srv.closing = true
	srv.cancel() // aborts TLS handshakes in progress
	var lns []*net.Listener
	for ln := range srv.listeners {
		lns = append(lns, ln)
	}
	sessions := make([]*Session, 0, len(srv.sessions))
	for s := range srv.sessions {
		sessions = append(sessions, s)
	}
	srv.mu.Unlock()
	var err error
	for _, ln := range lns {
		if cerr := (*ln).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return sessions, err
}

// Shutdown stops the server gracefully: it closes the listeners (Serve
// returns [ErrServerClosed]), aborts TLS handshakes in progress, and calls
// [Session.Shutdown] on every live session at once, so that each sends
// GoAway, lets its open streams finish and then closes. It blocks until
// every session has closed and every goroutine the server started,
// handlers included, has returned, and then returns nil or the error of
// closing a listener. When ctx ends first, the remaining streams are reset
// (their handlers then see [ErrStreamReset]) and Shutdown returns ctx.Err()
// at once, without waiting for handlers to return: call Close to wait for
// them. New connections and sessions are refused from the moment it is
// called. It is safe to call concurrently with Close and more than once.
func (srv *SessionServer) Shutdown(ctx context.Context) error {
	sessions, lnErr := srv.beginClose()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Shutdown(ctx)
			}()
		}
		wg.Wait()
		srv.wg.Wait()
	}()
	select {
	case <-done:
		return lnErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the server at once: it closes the listeners (Serve returns
// [ErrServerClosed]) and every session with [Session.Close], so that
// blocked calls on their streams fail with [ErrSessionShutdown]. It blocks
// until every goroutine the server started, handlers included, has
// returned, and returns the error of closing a listener, if any. It is
// safe to call concurrently with Shutdown and more than once.
func (srv *SessionServer) Close() error {
	sessions, err := srv.beginClose()
	closeSessions(sessions)
	srv.wg.Wait()
	return err
}

// onceCloseListener lets Serve close its listener on return even though
// Shutdown and Close may have closed it already.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
