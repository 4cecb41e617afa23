package yamux

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"
)

// State is where a session is in its life.
type State int

const (
	// StateOpen: streams may be opened in both directions.
	StateOpen State = iota
	// StateDraining: a GoAway was sent or received. We open no new
	// streams; after our own GoAway we also refuse the peer's. Open
	// streams continue until they finish.
	StateDraining
	// StateClosed: the session has ended; see [Session.Err].
	StateClosed
	// StateReconnecting: the session runs over a resumable connection
	// (spec.md §13) that lost its network connection and is being
	// re-established; Reads and Writes wait meanwhile. See
	// [Session.Reconnecting].
	StateReconnecting
)

// String returns "open", "draining", "closed" or "reconnecting".
func (st State) String() string {
	switch st {
	case StateOpen:
		return "open"
	case StateDraining:
		return "draining"
	case StateClosed:
		return "closed"
	case StateReconnecting:
		return "reconnecting"
	}
	return "unknown"
}

// State returns the session's current state. To wait for a change instead
// of polling, use [Session.Draining], [Session.Done] and
// [Session.Reconnecting]. StateReconnecting takes precedence over
// StateDraining.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return StateClosed
	case s.connReconnecting(): // resume.go
		return StateReconnecting
	case s.draining:
		return StateDraining
	}
	return StateOpen
}

// Draining returns a channel that is closed when the session leaves
// StateOpen: a GoAway was sent or received, or the session ended.
// The channel is made on the first call: most sessions are never asked.
func (s *Session) Draining() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drainingCh == nil {
		if s.draining {
			return closedChan
		}
		s.drainingCh = make(chan struct{})
	}
	return s.drainingCh
}

// closedChan is Draining's answer for a session that was draining before
// anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// setDrainingLocked closes drainingCh once, if it was made. Call with s.mu
// held.
func (s *Session) setDrainingLocked() {
	if !s.draining {
		s.draining = true
		if s.drainingCh != nil {
			close(s.drainingCh)
		}
	}
}

// idleChan returns the channel forgetStream signals when the stream table
// becomes empty, made on the first call (only Shutdown waits for it).
func (s *Session) idleChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idleCh == nil {
		s.idleCh = make(chan struct{}, 1)
	}
	return s.idleCh
}

// Shutdown ends the session gracefully: it queues GoAway(normal), so that
// no new stream is opened in either direction, waits until every open
// stream has finished (FIN both ways, or reset), then closes the session
// as [Session.Close] does. It returns nil when every stream finished, or an
// error wrapping [ErrSessionShutdown] when the session had already ended
// for another reason. When ctx ends first, whatever the connection is
// doing, it resets the remaining streams, starts closing the session and
// returns ctx.Err() at once; the session's goroutines then finish within
// closeFlushLimit, and Close waits for them. Streams still waiting in the
// accept backlog count as open: accept and finish them, or they run out
// the context. Like http.Server.Shutdown.
func (s *Session) Shutdown(ctx context.Context) error {
	if err := s.GoAway(); err != nil {
		return err
	}
	idle := s.idleChan() // made before the count: a stream forgotten after it signals
	for s.NumStreams() > 0 {
		select {
		case <-idle:
		case <-s.doneCh:
			if err := s.waitLoops(ctx); err != nil {
				return err
			}
			if err := s.Err(); !isLocalClose(err) {
				return err
			}
			return nil
		case <-ctx.Done():
			s.resetAll()
			s.shutdown(ErrLocalClose, GoAwayNormal, true)
			return ctx.Err()
		}
	}
	s.shutdown(ErrLocalClose, GoAwayNormal, true)
	return s.waitLoops(ctx)
}

// waitLoops waits until the receive and send loops have returned, or ctx
// ends (then it returns ctx.Err()).
func (s *Session) waitLoops(ctx context.Context) error {
	for _, ch := range []chan struct{}{s.sendDone, s.recvDone} {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// timeoutOr applies the convention every timeout of the lifecycle layer
// (SessionServer, Pool, Router) follows: zero means the default def, a
// negative value means no timeout (returned as 0), a positive value is
// itself. [Config]'s timeouts keep hashicorp/yamux's meanings instead
// (see each field).
func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// deadlineIn returns the deadline d from now, or no deadline for d == 0.
func deadlineIn(d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

func isLocalClose(err error) bool {
	return err == nil || errors.Is(err, ErrLocalClose)
}

// resetAll resets every stream the session tracks.
func (s *Session) resetAll() {
	s.mu.Lock()
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.Reset()
	}
}

// ConnectionState returns the TLS state of the connection under the
// session, and whether it has one: true when the connection is a
// *tls.Conn or anything else with a ConnectionState method. Use it to read
// the peer's certificate identity. With a *tls.Conn, the handshake is done
// by the first read or write of the session, so it is complete once a
// stream or ping has been exchanged; call HandshakeContext on the conn
// first to be sure.
func (s *Session) ConnectionState() (tls.ConnectionState, bool) {
	if c, ok := s.conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return c.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// closeSessions closes every session at once and waits for all: a Close
// may wait for its peer (the final flush), so one at a time would add up.
func closeSessions(sessions []*Session) {
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Close()
		}()
	}
	wg.Wait()
}
