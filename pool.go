package yamux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrPoolClosed is returned by [Pool.OpenStream] and [Pool.OpenNamed] after
// [Pool.Close].
var ErrPoolClosed = errors.New("yamux: pool closed")

// defaultPoolIdleTimeout is Pool.IdleTimeout when zero, as
// http.DefaultTransport's IdleConnTimeout.
const defaultPoolIdleTimeout = 90 * time.Second

// Pool keeps one client [Session] per remote address and opens streams on
// it: what Consul and Nomad write by hand around yamux. The first
// [Pool.OpenStream] for an address dials it with Dial; later calls reuse
// the session. Concurrent calls for an address that is being dialed wait
// for that one dial instead of dialing again.
//
// A session that has ended or is draining (the peer sent GoAway, see
// [Session.Draining]) is not used for new streams: the next OpenStream
// dials a new one. Streams already open on the old session are not
// migrated; they continue until they finish, after which the pool closes
// the old session (with [Session.Shutdown]). A session without streams for
// IdleTimeout is closed.
//
// The pool only opens streams: streams the peer opens on a pooled session
// are never accepted (they wait in the accept backlog until the peer's
// [Config.StreamOpenTimeout] resets them).
//
// Goroutines: while the pool holds sessions, one janitor that checks for
// idle and dead sessions every IdleTimeout/4, and one per retired session
// that waits for its streams to finish; [Pool.Close] waits for all of
// them. Dials run on the goroutine of the OpenStream that started them.
//
// Set the fields before the first OpenStream and do not change them
// afterwards. The methods are safe for concurrent use. The zero value,
// with Dial set, is ready to use.
type Pool struct {
	// Dial connects to addr. Required: OpenStream returns an error wrapping
	// [ErrInvalidConfig] when it is nil. ctx is the context of the
	// OpenStream that needs the connection, canceled also by [Pool.Close];
	// Dial should give up when it ends. For TLS, return a *tls.Conn
	// (tls.Dialer.DialContext).
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// Config configures every session; nil means [DefaultConfig]. An
	// invalid one makes OpenStream fail with an error wrapping
	// [ErrInvalidConfig].
	Config *Config

	// IdleTimeout is how long a session may have no streams before the
	// pool closes it. The check runs every IdleTimeout/4, so a session is
	// closed after between IdleTimeout and 1.25×IdleTimeout without
	// streams. Zero means 90s; negative means never (dead and draining
	// sessions are still cleaned up every 30s).
	IdleTimeout time.Duration

	mu      sync.Mutex // guards below; lock order: Pool.mu, then Session.mu
	closed  bool
	ctx     context.Context    // canceled by Close: aborts dials and drains
	cancel  context.CancelFunc // cancels ctx
	conns   map[string]*poolConn
	dials   map[string]*poolDial
	janitor bool           // the janitor goroutine runs
	wg      sync.WaitGroup // the janitor and the retiring goroutines
}

// poolConn is the session the pool uses for one address.
type poolConn struct {
	sess      *Session
	opening   int       // OpenStream calls between taking sess and getting their stream
	idleSince time.Time // when the janitor first saw it without streams; zero: busy
}

// poolDial is a dial in progress for one address; done is closed when sess
// or err is set.
type poolDial struct {
	done         chan struct{}
	conn         *poolConn
	err          error
	leaderCtxErr bool // err is the context error of the caller that dialed
}

// initLocked prepares the zero value. Call with p.mu held.
func (p *Pool) initLocked() {
	if p.ctx == nil {
		p.ctx, p.cancel = context.WithCancel(context.Background())
		p.conns = make(map[string]*poolConn)
		p.dials = make(map[string]*poolDial)
	}
}

// OpenStream opens a stream to addr on the pooled session, dialing one
// first when there is none, or when the pooled one has ended or is
// draining. It blocks while dialing (its own dial, or one in progress for
// the same address) and as [Session.OpenStream] does. When the session
// turns out unable to open streams (GoAway arrived, it ended, or its IDs
// are used up) it retires that session and tries once more on a new one.
// It returns [ErrPoolClosed], ctx.Err(), an error wrapping
// [ErrInvalidConfig], the error of Dial, or the error of
// [Session.OpenStream].
func (p *Pool) OpenStream(ctx context.Context, addr string) (*Stream, error) {
	if p.Dial == nil {
		return nil, fmt.Errorf("%w: Pool: nil Dial", ErrInvalidConfig)
	}
	for attempt := 0; ; attempt++ {
		c, err := p.take(ctx, addr)
		if err != nil {
			return nil, err
		}
		st, err := c.sess.OpenStream(ctx)
		p.mu.Lock()
		c.opening--
		p.mu.Unlock()
		if err == nil {
			return st, nil
		}
		if !sessionUnusable(err) {
			return nil, err
		}
		p.retire(addr, c)
		if attempt > 0 {
			return nil, err
		}
	}
}

// sessionUnusable reports whether an OpenStream error means that the
// session will never open another stream.
func sessionUnusable(err error) bool {
	return errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrRemoteGoAway) ||
		errors.Is(err, ErrLocalGoAway) || errors.Is(err, ErrStreamsExhausted)
}

// take returns the usable session for addr, dialing if needed, with its
// opening count raised so that the janitor leaves it alone.
func (p *Pool) take(ctx context.Context, addr string) (*poolConn, error) {
	for {
		p.mu.Lock()
		p.initLocked()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if c := p.conns[addr]; c != nil {
			if usable(c.sess) {
				c.opening++
				c.idleSince = time.Time{}
				p.mu.Unlock()
				return c, nil
			}
			p.retireLocked(addr, c)
		}
		if d := p.dials[addr]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil && !(d.leaderCtxErr && ctx.Err() == nil) {
				return nil, d.err
			}
			continue // take the new session, or lead a new dial
		}
		d := &poolDial{done: make(chan struct{})}
		p.dials[addr] = d
		p.mu.Unlock()
		return p.dial(ctx, addr, d)
	}
}

// dial runs the dial d for addr on the caller's goroutine and publishes
// its result to the callers waiting on d.
func (p *Pool) dial(ctx context.Context, addr string, d *poolDial) (*poolConn, error) {
	dctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	conn, err := p.Dial(dctx, addr)
	stop()
	cancel()
	var sess *Session
	if err == nil {
		if sess, err = Client(conn, p.Config); err != nil {
			conn.Close()
		}
	}

	p.mu.Lock()
	delete(p.dials, addr)
	switch {
	case p.closed:
		err = ErrPoolClosed
	case err != nil:
		d.leaderCtxErr = ctx.Err() != nil
	default:
		d.conn = &poolConn{sess: sess, opening: 1}
		p.conns[addr] = d.conn
		p.startJanitorLocked()
	}
	d.err = err
	close(d.done)
	p.mu.Unlock()
	if err != nil {
		if sess != nil {
			sess.Close()
		}
		return nil, err
	}
	return d.conn, nil
}

// usable reports whether s may open new streams: it is neither draining
// nor ended.
func usable(s *Session) bool {
	select {
	case <-s.Draining():
		return false
	default:
		return true
	}
}

// retire stops using c for addr, if it still is the session for addr.
func (p *Pool) retire(addr string, c *poolConn) {
	p.mu.Lock()
	p.retireLocked(addr, c)
	p.mu.Unlock()
}

// retireLocked removes c from the pool and starts the goroutine that shuts
// its session down once the streams on it have finished (at once when it
// has none or has ended). Call with p.mu held.
func (p *Pool) retireLocked(addr string, c *poolConn) {
	if p.conns[addr] != c {
		return // already retired
	}
	delete(p.conns, addr)
	if p.closed {
		return // Close closes it
	}
	s := c.sess
	p.wg.Add(1) // under mu while !closed: cannot race Close's Wait
	go func() {
		defer p.wg.Done()
		s.Shutdown(p.ctx) // Close cancels p.ctx: remaining streams are reset
		s.Close()         // reaps the session's goroutines in every case
	}()
}

// startJanitorLocked starts the janitor unless it runs. Call with p.mu held.
func (p *Pool) startJanitorLocked() {
	if p.janitor || p.closed {
		return
	}
	p.janitor = true
	p.wg.Add(1)
	go p.runJanitor()
}

// janitorInterval is how often the janitor looks at the sessions.
func (p *Pool) janitorInterval() time.Duration {
	switch {
	case p.IdleTimeout < 0:
		return 30 * time.Second
	case p.IdleTimeout == 0:
		return defaultPoolIdleTimeout / 4
	}
	return max(p.IdleTimeout/4, time.Millisecond)
}

// runJanitor retires idle, dead and draining sessions until the pool holds
// none or is closed.
func (p *Pool) runJanitor() {
	defer p.wg.Done()
	idle := p.IdleTimeout
	if idle == 0 {
		idle = defaultPoolIdleTimeout
	}
	tick := time.NewTicker(p.janitorInterval())
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		p.mu.Lock()
		for addr, c := range p.conns {
			switch {
			case !usable(c.sess):
				p.retireLocked(addr, c)
			case c.opening > 0 || c.sess.NumStreams() > 0:
				c.idleSince = time.Time{}
			case c.idleSince.IsZero():
				c.idleSince = now
			case idle > 0 && now.Sub(c.idleSince) >= idle:
				p.retireLocked(addr, c)
			}
		}
		if len(p.conns) == 0 || p.closed {
			p.janitor = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// NumSessions returns the number of sessions the pool would reuse: one per
// address at most, including any that has ended but was not yet noticed.
// Retired sessions whose streams are still finishing are not counted. It
// does not block.
func (p *Pool) NumSessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close closes every session of the pool, including retired ones whose
// streams were still finishing: streams still open fail with an error
// wrapping [ErrSessionShutdown] or with [ErrStreamReset]. Dials in
// progress are canceled, and later OpenStream calls return
// [ErrPoolClosed]. It blocks until every session is closed and every
// goroutine the pool started has returned. It is idempotent, safe for
// concurrent use, and returns nil.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.initLocked()
	p.closed = true
	p.cancel() // stops the janitor, aborts dials, and hurries retiring sessions
	sessions := make([]*Session, 0, len(p.conns))
	for _, c := range p.conns {
		sessions = append(sessions, c.sess)
	}
	clear(p.conns)
	p.mu.Unlock()
	closeSessions(sessions)
	p.wg.Wait()
	return nil
}
