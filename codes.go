package yamux

import "fmt"

// This file holds what the protocol lets peers say beyond "reset" and
// "goodbye": an error code in an RST (spec.md §3.4), a code in the GoAway
// of a Close (spec.md §6), and the hook through which receive windows are
// reserved from an outside memory manager (spec.md §4). libp2p/go-yamux
// reads and writes the same codes.

// StreamError is the error of a stream reset with a non-zero code: by
// the peer, with the code carried in the RST frame's length field, when
// Remote is true; by [Stream.ResetWithCode] on this end otherwise. A reset
// without a code is [ErrStreamReset] itself. Use [errors.As] to read the
// code.
type StreamError struct {
	Code   uint32
	Remote bool
}

// Error describes the reset, its code and who sent it.
func (e *StreamError) Error() string {
	if e.Remote {
		return fmt.Sprintf("yamux: stream reset by peer (code %d)", e.Code)
	}
	return fmt.Sprintf("yamux: stream reset (code %d)", e.Code)
}

// Is reports whether target is [ErrStreamReset] (every StreamError is a
// reset), or a *StreamError with the same Code and Remote.
func (e *StreamError) Is(target error) bool {
	if t, ok := target.(*StreamError); ok {
		return *t == *e
	}
	return target == ErrStreamReset
}

// ResetWithCode resets the stream like [Stream.Reset], and sends code in
// the RST frame (spec.md §3.4): the peer's Reads and Writes fail with a
// [*StreamError] carrying it, when it reads codes (this library and
// libp2p/go-yamux do; hashicorp/yamux ignores them). Our own later Reads
// and Writes fail with a *StreamError with Remote false. Code 0 is a plain
// Reset. It does not block and always returns nil.
func (st *Stream) ResetWithCode(code uint32) error {
	if code == 0 {
		return st.Reset()
	}
	st.mu.Lock()
	st.rstCode = code // read by the in-order RST that evReset queues
	forget := st.handleLocked(evReset, &StreamError{Code: code})
	st.mu.Unlock()
	st.finish(forget)
	return nil
}

// resetByPeer applies an RST received on a WindowUpdate, whose length is
// the peer's error code (0: none, a plain ErrStreamReset). The frame's
// other flags are applied first, in flagsLocked's order.
func (st *Stream) resetByPeer(code uint32, fl flags) error {
	if code == 0 {
		return st.addSendWindow(0, fl)
	}
	st.mu.Lock()
	releaseSyn, forget := st.flagsLocked(fl &^ flagRST)
	forget = st.handleLocked(evRST, &StreamError{Code: code, Remote: true}) || forget
	st.mu.Unlock()
	st.afterFlags(releaseSyn, forget)
	return nil
}

// CloseWithCode closes the session like [Session.Close], with code in the
// final GoAway instead of [GoAwayNormal] (spec.md §6). A peer that reads
// codes ends its session at once on a non-zero one, with a [*GoAwayError]
// carrying the code and Remote set as its cause. Our own [Session.Err] is
// then an error matching both [ErrLocalClose] and a *GoAwayError with
// Remote false. Code 0 is a plain Close. It blocks like Close and always
// returns nil.
func (s *Session) CloseWithCode(code GoAwayCode) error {
	if code == GoAwayNormal {
		return s.Close()
	}
	s.shutdown(fmt.Errorf("%w: %w", ErrLocalClose, &GoAwayError{Code: code}), code, true)
	s.wg.Wait()
	return nil
}

// MemoryManager is consulted when a session commits memory to a receive
// window: a stream's initial window when it is opened or accepted, and
// each growth of a window by auto-tuning (spec.md §4). Set it in
// [Config.MemoryManager]; a network.ResourceScope or ResourceScopeSpan of
// go-libp2p has these methods.
//
// A refusal never ends the session: a refused initial window refuses that
// stream (an incoming one is reset, [Session.OpenStream] fails with an
// error wrapping [ErrReceiveBufferFull] and the refusal), and a refused
// growth leaves the window as it is. Everything reserved is released when
// the stream is forgotten, or when the session ends, before Close returns.
//
// Its methods are called with the session's or a stream's lock held, from
// the receive loop among others: they must be safe for concurrent use,
// must not block, and must not call into the session.
type MemoryManager interface {
	// ReserveMemory reserves size bytes, or returns an error to refuse
	// them. prio is 255 for a stream's initial window and 128 for
	// growth, as libp2p/go-yamux passes them (a go-libp2p resource
	// manager then refuses growth past half of a limit earlier than new
	// streams); other managers may ignore it.
	ReserveMemory(size int, prio uint8) error
	// ReleaseMemory gives back size bytes reserved before.
	ReleaseMemory(size int)
}

// Priorities passed to MemoryManager.ReserveMemory.
const (
	memPrioInitial uint8 = 255
	memPrioGrowth  uint8 = 128
)

// reserveMemory asks the MemoryManager, if any, for n bytes.
func (s *Session) reserveMemory(n uint32, prio uint8) error {
	if s.cfg.MemoryManager == nil || n == 0 {
		return nil
	}
	return s.cfg.MemoryManager.ReserveMemory(int(n), prio)
}

// reserveInitial takes a new stream's initial window of n bytes: from the
// MaxReceiveBuffer budget, then from the MemoryManager. The error wraps
// [ErrReceiveBufferFull] (and the manager's refusal).
func (s *Session) reserveInitial(n uint32) error {
	if !s.reserve(n) {
		return ErrReceiveBufferFull
	}
	if err := s.reserveMemory(n, memPrioInitial); err != nil {
		s.release(n)
		return fmt.Errorf("%w: %w", ErrReceiveBufferFull, err)
	}
	return nil
}

// growthBudget is the budget (flow.go) a stream's window grows from: at
// most half of the session's MaxReceiveBuffer for all growth together (the
// other half stays for initial windows), then MaxReceiveBuffer, then the
// MemoryManager at growth priority.
type growthBudget struct{ s *Session }

func (b growthBudget) limit() uint32 { return b.s.growthCap() }

func (b growthBudget) reserve(n uint32) bool {
	if !b.s.reserveGrowth(n) {
		return false
	}
	if !b.s.reserve(n) {
		b.s.grown.Add(-int64(n))
		return false
	}
	if err := b.s.reserveMemory(n, memPrioGrowth); err != nil {
		b.s.release(n)
		b.s.grown.Add(-int64(n))
		return false
	}
	return true
}

// releaseWindow gives back a forgotten stream's window, to the budget and
// to the MemoryManager.
func (s *Session) releaseWindow(n uint32) {
	s.release(n)
	if s.cfg.MemoryManager != nil && n > 0 {
		s.cfg.MemoryManager.ReleaseMemory(int(n))
	}
}

// releaseAborted releases the windows of streams that a session's end
// aborted: they are never forgotten one by one. abort marked them
// forgotten, so their windows no longer grow (Read then grows from
// noBudget).
func (s *Session) releaseAborted(streams []*Stream) {
	if s.cfg.MemoryManager == nil {
		return
	}
	for _, st := range streams {
		st.mu.Lock()
		n := st.in.size
		st.mu.Unlock()
		s.releaseWindow(n)
	}
}
