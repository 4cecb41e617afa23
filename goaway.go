package yamux

import "fmt"

// GoAway tells the peer that this end accepts no new streams: their SYNs
// are refused with RST from now on, and our own OpenStream fails with
// [ErrLocalGoAway]. Existing streams continue. It queues the frame ahead
// of data and returns without waiting for it to be written: nil, or an
// error wrapping [ErrSessionShutdown] when the session has ended. Calling
// it again does nothing.
func (s *Session) GoAway() error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return sessionError(s.err)
	}
	if s.localGoAway {
		s.mu.Unlock()
		return nil
	}
	s.localGoAway = true
	s.setDrainingLocked()
	s.mu.Unlock()
	s.sq.pushCtrl(encodeHeader(typeGoAway, 0, 0, uint32(GoAwayNormal)))
	return nil
}

// handleGoAway records the peer's GoAway. Normal means "no new streams":
// existing ones continue (as hashicorp/yamux does). An error code means the
// peer is tearing the session down, so we end it at once, with the code
// available through errors.As on [Session.Err].
func (s *Session) handleGoAway(h header) error {
	ga := &GoAwayError{Code: GoAwayCode(h.length()), Remote: true}
	s.mu.Lock()
	if s.remoteGoAway == nil {
		s.remoteGoAway = ga
	}
	s.setDrainingLocked()
	s.mu.Unlock()
	if ga.Code == GoAwayNormal {
		s.logger.Info("yamux: peer sent GoAway", "code", ga.Code)
		return nil
	}
	s.shutdown(fmt.Errorf("%w", ga), 0, false) // logs it
	return ga
}
