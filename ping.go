package yamux

import (
	"context"
	"fmt"
	"time"
)

// pendingPing is a ping we sent and await the ACK of.
type pendingPing struct {
	sent time.Time
	done chan struct{} // closed when the ACK arrives or the session ends
	rtt  time.Duration // set before done closes, if the ACK arrived
}

// Ping sends a ping and waits for the peer's answer. It returns the round
// trip time, ctx.Err(), or an error wrapping [ErrSessionShutdown]. The
// measured time also feeds window auto-tuning ([Session.RTT]).
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	p, err := s.startPing()
	if err != nil {
		return 0, err
	}
	select {
	case <-p.done:
		if p.rtt == 0 {
			return 0, s.Err()
		}
		return p.rtt, nil
	case <-ctx.Done():
		s.mu.Lock()
		s.forgetPingLocked(p)
		s.mu.Unlock()
		return 0, ctx.Err()
	}
}

// startPing registers and queues one ping without waiting for its answer.
func (s *Session) startPing() (*pendingPing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, sessionError(s.err)
	}
	return s.startPingLocked(), nil
}

// startPingLocked registers and queues one ping. Call with s.mu held (the
// send queue's lock is a leaf).
func (s *Session) startPingLocked() *pendingPing {
	id := s.nextPing
	s.nextPing++
	p := &pendingPing{sent: time.Now(), done: make(chan struct{})}
	if s.pings == nil {
		s.pings = make(map[uint32]*pendingPing, 1)
	}
	s.pings[id] = p
	s.sq.pushCtrl(encodeHeader(typePing, flagSYN, 0, id))
	return p
}

// forgetPingLocked removes p from the pings awaiting an answer. The map is
// dropped when it empties: an idle session holds none (its buckets stay
// allocated after a delete). Call with s.mu held.
func (s *Session) forgetPingLocked(p *pendingPing) {
	for id, q := range s.pings {
		if q == p {
			delete(s.pings, id)
		}
	}
	if len(s.pings) == 0 {
		s.pings = nil
	}
}

// RTT returns the last measured ping round trip, or 0 before the first.
func (s *Session) RTT() time.Duration { return time.Duration(s.rtt.Load()) }

// handlePing answers a ping or completes one of ours. Answers wait in a
// queue of maxPendingPingAcks; when a peer sends pings faster than we can
// write answers and the queue is full, further pings go unanswered instead
// of being buffered (spec.md §5).
func (s *Session) handlePing(h header) error {
	fl, opaque := h.flags(), h.length()
	switch {
	case fl&flagSYN != 0:
		if !s.sq.pushPingAck(opaque) {
			s.stats.pingsDropped.Add(1)
		}
	case fl&flagACK != 0:
		s.mu.Lock()
		p := s.pings[opaque]
		delete(s.pings, opaque)
		if len(s.pings) == 0 {
			s.pings = nil // see forgetPingLocked
		}
		s.mu.Unlock()
		if p != nil {
			p.rtt = max(time.Since(p.sent), 1)
			s.rtt.Store(int64(p.rtt))
			close(p.done)
		}
	default:
		return fmt.Errorf("%w: ping with neither SYN nor ACK (flags %#x)", ErrProtocol, uint16(fl))
	}
	return nil
}

// Keepalive is one timer, not a goroutine: it fires every
// KeepAliveInterval to send a ping, then ConnectionWriteTimeout later to
// check that the answer came (ending the session with ErrKeepAliveTimeout
// if it did not), then again KeepAliveInterval after that check. An idle
// session so costs one timer for it.

// startKeepalive arms the keepalive timer. Called once, by NewSession.
func (s *Session) startKeepalive() {
	s.mu.Lock()
	s.keepaliveTimer = time.AfterFunc(s.cfg.KeepAliveInterval, s.keepaliveFired)
	s.mu.Unlock()
}

// keepaliveFired sends the keepalive ping, or checks its answer.
func (s *Session) keepaliveFired() {
	if s.keepaliveStep() && !s.keepaliveResume() { // keepaliveResume: resume.go
		s.shutdown(ErrKeepAliveTimeout, GoAwayInternalError, true) // logs it
	}
}

// keepaliveStep takes s.mu, sends the ping or checks its answer,
// re-arms the timer, and reports whether the answer is missing.
func (s *Session) keepaliveStep() (missing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	if p := s.keepalivePing; p != nil {
		s.keepalivePing = nil
		select {
		case <-p.done: // answered
		default:
			s.forgetPingLocked(p)
			return true
		}
		s.keepaliveTimer.Reset(s.cfg.KeepAliveInterval)
		return false
	}
	s.keepalivePing = s.startPingLocked()
	s.keepaliveTimer.Reset(s.cfg.ConnectionWriteTimeout)
	return false
}
