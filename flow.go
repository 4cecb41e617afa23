package yamux

import (
	"fmt"
	"math"
	"time"
)

// This file is flow control as two small value types, one per direction
// of a stream (spec.md §4). They know nothing about streams, frames or
// sessions: their methods take bytes and times and return what to send,
// so that every rule is unit-tested from a table (flow_test.go). The
// stream holds them under Stream.mu.

// budget is where a receive window's growth is reserved (growthBudget:
// the session's MaxReceiveBuffer). limit is the largest window growth may
// reach now (asked only when a credit is due, not on every Read); reserve
// takes n bytes or reports that there are not enough. Nothing here gives
// bytes back: a window never shrinks, and the session releases a stream's
// whole window when it forgets the stream.
type budget interface {
	limit() uint32
	reserve(n uint32) bool
}

// inflow is the receive side of a stream's window: what the peer may still
// send, and when to give it more.
type inflow struct {
	avail   uint32    // bytes the peer may still send before it must wait
	size    uint32    // the window we aim for; reserved from the budget
	unacked uint32    // bytes consumed by the reader but not yet credited
	epoch   time.Time // auto-tuning: when the last credit went out
}

// newInflow returns a window of size bytes, all granted.
func newInflow(size uint32) inflow { return inflow{avail: size, size: size} }

// take admits n received bytes. It reports an error when n exceeds what
// the peer was granted: the peer broke the protocol.
func (f *inflow) take(n uint32) error {
	if n > f.avail {
		return fmt.Errorf("%w: %d bytes with %d left", ErrRecvWindowExceeded, n, f.avail)
	}
	f.avail -= n
	return nil
}

// consume records n bytes read by the application and returns the credit
// to send now, 0 while it is not worth a frame: credit goes out once a
// quarter of the window has been read (one update per quarter window, not
// one per Read), so that a sender a round trip away still has three
// quarters of a window to send while the credit travels. buffered is what
// is still unread after this read. When the reader keeps up (little
// buffered) and reads at least a quarter window per round trip (what it
// read since the previous credit, over the time since then), the window,
// not the reader, limits the stream: it grows to twice its size, up to
// b.limit(), with the growth reserved from b and added to the credit
// (auto-tuning, spec.md §4).
func (f *inflow) consume(n uint32, buffered int, now time.Time, rtt time.Duration, b budget) uint32 {
	f.unacked += n
	if f.unacked < f.size/4 {
		return 0
	}
	var growth uint32
	if buffered <= int(f.size/8) {
		growth = f.tune(f.unacked, now, rtt, b)
	}
	credit := f.unacked + growth
	f.unacked = 0
	f.avail += credit
	return credit
}

// tune grows the window when read bytes were consumed since the previous
// credit at a rate of at least a quarter window per round trip, and
// returns the growth (0 when it does not grow). Each credit starts a new
// epoch, so growth needs a fast reader throughout. The rate, not the time
// alone, is tested: a reader that gets a whole window in one Read per
// round trip is as fast as one that reads it in four.
func (f *inflow) tune(read uint32, now time.Time, rtt time.Duration, b budget) uint32 {
	prev := f.epoch
	f.epoch = now
	if rtt <= 0 || prev.IsZero() {
		return 0
	}
	max := b.limit()
	if f.size >= max {
		return 0
	}
	if float64(read)*4*rtt.Seconds() < float64(f.size)*now.Sub(prev).Seconds() {
		return 0
	}
	grown := min(uint64(f.size)*2, uint64(max))
	growth := uint32(grown) - f.size
	if !b.reserve(growth) {
		return 0
	}
	f.size = uint32(grown)
	return growth
}

// discard gives back, at once, the credit for n bytes dropped unread
// together with what was consumed and not yet credited: nobody will read
// them, and a peer blocked on a full window must not be left waiting.
func (f *inflow) discard(n uint32) uint32 {
	credit := f.unacked + n
	f.unacked = 0
	f.avail += credit
	return credit
}

// outflow is the send side of a stream's window: what the peer lets us
// send.
type outflow struct {
	avail uint32
}

// take reserves up to want bytes (and at most limit) of the window and
// returns how many: 0 when the window is exhausted.
func (f *outflow) take(want int, limit uint32) uint32 {
	n := min(uint32(min(want, math.MaxUint32)), f.avail, limit)
	f.avail -= n
	return n
}

// giveBack returns n bytes taken but never sent.
func (f *outflow) giveBack(n uint32) { f.avail += n }

// add applies a window update of delta bytes. It reports an error when the
// window would pass 2³²−1: the peer broke the protocol.
func (f *outflow) add(delta uint32) error {
	if uint64(f.avail)+uint64(delta) > math.MaxUint32 {
		return fmt.Errorf("%w: window update of %d overflows a window of %d", ErrProtocol, delta, f.avail)
	}
	f.avail += delta
	return nil
}
