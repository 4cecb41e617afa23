package yamux

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds ResumeListener, the server side of the resumption layer
// (spec.md §13): it runs the handshake on every accepted connection,
// hands new sessions' connections to Accept, attaches resumed ones to the
// connection they continue, and keeps the table of sessions, bounded, with
// those waiting for their client (detached) timed out after ResumeTimeout.

// errListenerClosed ends detached sessions when their listener closes:
// nothing can resume them any more.
var errListenerClosed = fmt.Errorf("yamux: ResumeListener closed: %w", net.ErrClosed)

// ResumeListener is a [net.Listener] whose connections survive the loss of
// the network connection under them: Accept returns one connection per new
// session, and a client that comes back (see [DialResumable]) is attached
// to its session's connection, invisibly to Accept and to the session.
// Serve it with [SessionServer] (srv.Serve(rl) just works), or call
// [Server] on each accepted connection.
//
// For TLS, wrap the network listener (tls.NewListener) and leave
// SessionServer.TLSConfig nil: TLS must run under the resumption layer,
// one TLS connection per network connection. The handshake runs it, under
// HandshakeTimeout.
//
// Goroutines: one accepting from the wrapped listener, and one per
// handshake in progress (at most MaxHandshakes; a connection beyond that
// is closed at once). Each connection it returns has its own (see
// spec.md §13.1). It is safe for concurrent use.
type ResumeListener struct {
	ln       net.Listener
	rc       ResumeConfig
	acceptCh chan net.Conn
	done     chan struct{} // closed by Close, or when ln fails for good
	wg       sync.WaitGroup
	once     sync.Once
	closeErr error

	// mu is a leaf: taken while a resumableConn's mu is held (never the
	// other way round).
	mu         sync.Mutex
	closed     bool
	doneClosed bool
	lnErr      error
	conns      map[[sessionIDLen]byte]*resumableConn
	detached   map[*resumableConn]detachEntry
	handshakes map[net.Conn]struct{}

	newSessions  atomic.Uint64
	resumed      atomic.Uint64
	refused      atomic.Uint64
	expired      atomic.Uint64
	evicted      atomic.Uint64
	notResumable atomic.Uint64
	hsErrors     atomic.Uint64
	hsDropped    atomic.Uint64
}

type detachEntry struct {
	at    time.Time
	epoch uint64
}

var _ net.Listener = (*ResumeListener)(nil)

// ResumeServerStats is a snapshot of a [ResumeListener]'s counters.
type ResumeServerStats struct {
	Sessions          int    // sessions known: connected or detached
	Detached          int    // sessions waiting for their client to reconnect
	DetachedBytes     int64  // replay-buffer memory the detached sessions hold
	Handshakes        int    // handshakes in progress, new sessions waiting for Accept among them
	NewSessions       uint64 // new sessions returned by Accept
	Resumed           uint64 // resumptions accepted
	Refused           uint64 // resumptions refused (unknown session, bad proof or identity, inconsistent counts)
	Expired           uint64 // detached sessions ended after ResumeTimeout
	Evicted           uint64 // detached sessions ended because MaxDetached was reached
	NotResumable      uint64 // connections from peers that do not speak the layer (plain yamux)
	HandshakeErrors   uint64 // handshakes that failed otherwise (timeout, malformed, cut)
	HandshakesDropped uint64 // connections closed at once because MaxHandshakes were in progress
}

// NewResumeListener returns a listener that accepts connections on ln and
// runs the resumption layer's server on each. A nil rcfg means the
// defaults of [ResumeConfig]; it is copied. It returns an error wrapping
// [ErrInvalidConfig] for a bad config. The listener owns ln and closes it
// on Close.
func NewResumeListener(ln net.Listener, rcfg *ResumeConfig) (*ResumeListener, error) {
	var rc ResumeConfig
	if rcfg != nil {
		rc = *rcfg
	}
	if err := rc.verify(); err != nil {
		return nil, err
	}
	if ln == nil {
		return nil, fmt.Errorf("%w: NewResumeListener: nil listener", ErrInvalidConfig)
	}
	l := &ResumeListener{
		ln:         ln,
		rc:         rc,
		acceptCh:   make(chan net.Conn),
		done:       make(chan struct{}),
		conns:      make(map[[sessionIDLen]byte]*resumableConn),
		detached:   make(map[*resumableConn]detachEntry),
		handshakes: make(map[net.Conn]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Accept blocks until a client starts a new session, and returns its
// connection: a net.Conn that runs the session's byte stream and survives
// reconnections (start a [Server] session on it). It returns an error
// wrapping [net.ErrClosed] after Close, or the wrapped listener's error
// when it failed for good.
func (l *ResumeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.acceptCh:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		err := l.lnErr
		l.mu.Unlock()
		if err == nil {
			err = errListenerClosed
		}
		return nil, err
	}
}

// Addr returns the wrapped listener's address.
func (l *ResumeListener) Addr() net.Addr { return l.ln.Addr() }

// Close closes the wrapped listener, aborts the handshakes in progress,
// and ends the detached sessions (nothing can resume them any more; their
// sessions end with an error wrapping [net.ErrClosed]). Connected
// sessions carry on, but end when they lose their connection. It waits
// for the listener's goroutines and returns the wrapped listener's Close
// error. It is idempotent.
func (l *ResumeListener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.closeDoneLocked()
		hs := make([]net.Conn, 0, len(l.handshakes))
		for c := range l.handshakes {
			hs = append(hs, c)
		}
		type victim struct {
			c     *resumableConn
			epoch uint64
		}
		var det []victim
		for c, e := range l.detached {
			det = append(det, victim{c, e.epoch})
		}
		l.mu.Unlock()
		l.closeErr = l.ln.Close()
		for _, c := range hs {
			c.Close()
		}
		for _, v := range det {
			v.c.expire(v.epoch, errListenerClosed)
		}
	})
	l.wg.Wait()
	return l.closeErr
}

func (l *ResumeListener) closeDoneLocked() {
	if !l.doneClosed {
		l.doneClosed = true
		close(l.done)
	}
}

// Stats returns a snapshot of the listener's counters. It does not block
// for long.
func (l *ResumeListener) Stats() ResumeServerStats {
	l.mu.Lock()
	st := ResumeServerStats{Sessions: len(l.conns), Detached: len(l.detached), Handshakes: len(l.handshakes)}
	det := make([]*resumableConn, 0, len(l.detached))
	for c := range l.detached {
		det = append(det, c)
	}
	l.mu.Unlock()
	for _, c := range det {
		st.DetachedBytes += int64(c.heldBytes())
	}
	st.NewSessions = l.newSessions.Load()
	st.Resumed = l.resumed.Load()
	st.Refused = l.refused.Load()
	st.Expired = l.expired.Load()
	st.Evicted = l.evicted.Load()
	st.NotResumable = l.notResumable.Load()
	st.HandshakeErrors = l.hsErrors.Load()
	st.HandshakesDropped = l.hsDropped.Load()
	return st
}

func (l *ResumeListener) acceptLoop() {
	defer l.wg.Done()
	var pause time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				t := time.NewTimer(pause)
				select {
				case <-t.C:
				case <-l.done:
					t.Stop()
					return
				}
				continue
			}
			l.mu.Lock()
			l.lnErr = err
			l.closeDoneLocked()
			l.mu.Unlock()
			return
		}
		pause = 0
		if !l.admit(raw) {
			raw.Close()
			continue
		}
		go l.handshake(raw)
	}
}

// admit takes a handshake slot for raw.
func (l *ResumeListener) admit(raw net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if len(l.handshakes) >= l.rc.maxHandshakes() {
		l.hsDropped.Add(1)
		return false
	}
	l.handshakes[raw] = struct{}{}
	l.wg.Add(1) // under mu while not closed: Close sets closed before it waits
	return true
}

// handshake runs the server's handshake on raw and dispatches it.
func (l *ResumeListener) handshake(raw net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.handshakes, raw)
		l.mu.Unlock()
	}()
	log := l.rc.logger()
	ctx := context.Background()
	done, err := boundConn(ctx, raw, l.rc.handshakeTimeout())
	if err != nil {
		l.hsErrors.Add(1)
		log.Debug("yamux: resumption handshake failed", "remote", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	h, err := serverGreet(ctx, raw, &l.rc)
	if err != nil {
		log.Debug("yamux: resumption handshake failed", "remote", raw.RemoteAddr(), "err", err)
		done()
		if errors.Is(err, ErrNotResumable) {
			l.notResumable.Add(1)
			closeNotResumable(raw)
		} else {
			l.hsErrors.Add(1)
			raw.Close()
		}
		return
	}
	if h.kind == helloResume {
		l.resume(h, done)
		return
	}
	res, err := h.acceptNew()
	if err == nil {
		err = done()
	}
	if err != nil {
		l.hsErrors.Add(1)
		log.Debug("yamux: resumption handshake failed", "remote", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	c := newResumableConn(false, raw, res, &l.rc, l, nil)
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.conns[res.id] = c
	}
	l.mu.Unlock()
	if closed {
		c.Close()
		return
	}
	select {
	case l.acceptCh <- c.netConn():
		l.newSessions.Add(1)
	case <-l.done:
		c.Close()
	}
}

// resume answers a resumption request: the session must exist, the proof
// must be made with its secret on this connection, the peer must be the
// same (TLS or not, and the same client certificate key), and the counts
// must be consistent. Every refusal looks the same to the client.
func (l *ResumeListener) resume(h *serverHandshake, done func() error) {
	l.mu.Lock()
	c := l.conns[h.req.id]
	l.mu.Unlock()
	var secret [secretLen]byte
	if c != nil {
		secret = c.secret
	} else {
		rand.Read(secret[:]) // the same work for an unknown session
	}
	ok := h.checkProof(secret) && c != nil
	if ok {
		key, hasKey := h.info.peerKey()
		ok = c.tls == h.info.ok && c.hasKey == hasKey && c.peerKey == key
	}
	var recvd uint64
	if ok {
		recvd, ok = c.beginResume(h.req.recvd)
	}
	if !ok {
		l.refused.Add(1)
		l.rc.logger().Debug("yamux: resumption refused", "remote", h.conn.RemoteAddr())
		h.refuse()
		done()
		h.conn.Close()
		return
	}
	err := h.answerResume(c.secret, recvd)
	if err == nil {
		err = done()
	}
	if err != nil {
		c.abortResume()
		l.hsErrors.Add(1)
		h.conn.Close()
		return
	}
	c.install(h.conn, h.req.recvd, recvd) // counted in attachLocked
}

// detachLocked registers c as waiting for its client since now. When
// MaxDetached are waiting, it returns the one waiting longest, which the
// caller ends. It reports closed when the listener is closed: c cannot be
// resumed. Called with c.mu held.
func (l *ResumeListener) detachLocked(c *resumableConn, epoch uint64) (victim *resumableConn, victimEpoch uint64, closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, true
	}
	l.detached[c] = detachEntry{at: time.Now(), epoch: epoch}
	if limit := l.rc.maxDetached(); limit > 0 && len(l.detached) > limit {
		var oldest time.Time
		for d, e := range l.detached {
			if d != c && (victim == nil || e.at.Before(oldest)) {
				victim, victimEpoch, oldest = d, e.epoch, e.at
			}
		}
		delete(l.detached, victim)
	}
	return victim, victimEpoch, false
}

// attachLocked records that c was resumed. Called with c.mu held, before
// the new connection carries data, so that Stats counts a resumption
// before anything sent over it arrives.
func (l *ResumeListener) attachLocked(c *resumableConn) {
	l.mu.Lock()
	delete(l.detached, c)
	l.mu.Unlock()
	l.resumed.Add(1)
}

// forgetLocked drops c, done with cause. Called with c.mu held.
func (l *ResumeListener) forgetLocked(c *resumableConn, cause error) {
	l.mu.Lock()
	delete(l.detached, c)
	if l.conns[c.id] == c {
		delete(l.conns, c.id)
	}
	l.mu.Unlock()
	switch {
	case errors.Is(cause, ErrResumeTimeout):
		l.expired.Add(1)
	case errors.Is(cause, ErrResumeLimit):
		l.evicted.Add(1)
	}
}
