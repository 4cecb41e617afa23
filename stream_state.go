package yamux

import (
	"fmt"
	"math"
	"time"
)

// This file holds the stream's state transitions: what the receive loop
// applies to a stream, its lifecycle timers, and its removal from the
// session. The rule for every method here: decide under st.mu, release it,
// then act on the session (streamActions.apply).

// streamActions are what a state change asks of the session, done after
// st.mu is released.
type streamActions struct {
	credit     uint32 // send a window update of this size
	rst        bool   // send RST on the control queue (it may overtake data)
	rstInOrder bool   // send RST on the data queue, behind our queued data and FIN
	releaseSyn bool   // return our SYN token (the ACK arrived)
	forget     bool   // remove the stream from the session's table
}

func (st *Stream) apply(a streamActions) {
	s := st.sess
	if a.credit > 0 {
		s.sendCtrl(encodeHeader(typeWindowUpdate, 0, st.id, a.credit))
	}
	if a.rst {
		s.sendCtrl(encodeHeader(typeWindowUpdate, flagRST, st.id, 0))
	}
	if a.rstInOrder {
		s.post(s.dataCh, encodeHeader(typeWindowUpdate, flagRST, st.id, 0))
	}
	if a.releaseSyn {
		<-s.synSem
	}
	if a.forget {
		s.forgetStream(st)
	}
}

// finishedLocked reports whether the stream is over for the wire: reset,
// or FIN sent and received.
func (st *Stream) finishedLocked() bool {
	return st.err != nil || (st.readClosed && st.writeClosed)
}

// markForgottenLocked decides, once, that the stream leaves the session's
// table, and stops its timers.
func (st *Stream) markForgottenLocked() bool {
	if st.forgotten {
		return false
	}
	st.forgotten = true
	stopTimer(st.openTimer)
	stopTimer(st.closeTimer)
	return true
}

// forget removes the stream from the session, once.
func (st *Stream) forget() {
	st.mu.Lock()
	ok := st.markForgottenLocked()
	st.mu.Unlock()
	if ok {
		st.sess.forgetStream(st)
	}
}

// resetLocked fails the stream with err and reports what to do: RST the
// peer (unless it reset us) and forget the stream. Received data is kept
// only when the peer's FIN already arrived: then it is complete.
func (st *Stream) resetLocked(err error, sendRST bool) streamActions {
	if st.err != nil {
		return streamActions{}
	}
	st.err = err
	st.sess.stats.streamsReset.Add(1)
	if !st.readClosed {
		st.recv.reset()
	}
	st.cond.Broadcast()
	return streamActions{rst: sendRST, forget: st.markForgottenLocked()}
}

// abort fails the stream because the session ended. The session has
// already cleared its table.
func (st *Stream) abort(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.forgotten = true
	stopTimer(st.openTimer)
	stopTimer(st.closeTimer)
	st.cond.Broadcast()
	st.mu.Unlock()
}

// needsAck reports, once, that an accepted stream's ACK is still to be
// sent; false when the stream was already reset.
func (st *Stream) needsAck() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.acked || st.err != nil {
		return false
	}
	st.acked = true
	return true
}

// startOpenTimer resets the stream if its ACK does not arrive within
// StreamOpenTimeout.
func (st *Stream) startOpenTimer() {
	d := st.sess.cfg.StreamOpenTimeout
	if d == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.acked || st.forgotten {
		return
	}
	st.openTimer = time.AfterFunc(d, func() {
		st.mu.Lock()
		var a streamActions
		if !st.acked {
			a = st.resetLocked(ErrStreamOpenTimeout, true)
		}
		st.mu.Unlock()
		st.apply(a)
	})
}

// startCloseTimerLocked resets the stream if the peer's FIN does not arrive
// within StreamCloseTimeout of ours. Call with st.mu held.
func (st *Stream) startCloseTimerLocked() {
	d := st.sess.cfg.StreamCloseTimeout
	if d == 0 || st.closeTimer != nil {
		return
	}
	st.closeTimer = time.AfterFunc(d, func() {
		st.mu.Lock()
		var a streamActions
		if !st.readClosed {
			a = inOrder(st.resetLocked(ErrStreamReset, true))
		}
		st.mu.Unlock()
		st.apply(a)
	})
}

// inOrder moves a's RST to the data queue, so that it cannot overtake our
// own FIN or data still queued: an RST that arrived first would make the
// peer discard them (spec.md §3.4).
func inOrder(a streamActions) streamActions {
	a.rstInOrder, a.rst = a.rst, false
	return a
}

// applyFlagsLocked applies ACK, FIN and RST from a received frame.
func (st *Stream) applyFlagsLocked(fl flags) streamActions {
	var a streamActions
	if fl&flagACK != 0 && st.opened && !st.acked {
		st.acked = true
		stopTimer(st.openTimer)
		st.openTimer = nil // an idle stream keeps no timer
		if st.synToken {
			st.synToken = false
			a.releaseSyn = true
		}
	}
	if fl&flagRST != 0 {
		r := st.resetLocked(ErrStreamReset, false)
		r.releaseSyn = a.releaseSyn
		return r
	}
	if fl&flagFIN != 0 && !st.readClosed {
		st.readClosed = true
		st.cond.Broadcast()
		if st.finishedLocked() {
			a.forget = st.markForgottenLocked()
		}
	}
	return a
}

// admitData checks an incoming Data frame of n bytes against the stream's
// state and window before its payload is read, and takes the window. It
// reports whether the payload is to be dropped (nobody will read it).
func (st *Stream) admitData(n uint32) (drop bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readClosed && n > 0 {
		// An empty Data frame after FIN is tolerated: a repeated FIN, or
		// an RST carried on Data (rust-yamux does that).
		return false, fmt.Errorf("%w: data on stream %d after its FIN", ErrProtocol, st.id)
	}
	if n > st.recvWindow {
		return false, fmt.Errorf("%w: stream %d got %d bytes with %d left", ErrRecvWindowExceeded, st.id, n, st.recvWindow)
	}
	st.recvWindow -= n
	st.bytesReceived += uint64(n)
	st.framesReceived++
	return st.err != nil || st.closed || st.readShut, nil
}

// deliver hands a received payload (already admitted) and the frame's
// flags to the stream. Data for a stream that was closed locally resets it:
// nobody will ever read it.
//
// The payload is either chunks (pooled blocks, taken over) or small (a
// few bytes in the receive loop's scratch, copied into the buffer's last
// block): a peer sending tiny frames then costs its bytes, not a block per
// frame.
func (st *Stream) deliver(chunks []chunk, small []byte, n uint32, fl flags) {
	st.mu.Lock()
	var a streamActions
	switch {
	case n == 0:
	case st.err != nil:
		freeChunks(chunks)
	case st.closed:
		freeChunks(chunks)
		if st.writeClosed {
			a = inOrder(st.resetLocked(ErrStreamReset, true))
		} else {
			// Close is queuing our FIN (it waits for a Write in
			// progress); the RST must follow it, so Close sends it.
			st.rstAfterFIN = true
		}
	case st.readShut:
		freeChunks(chunks)
		a.credit = st.creditLocked(n)
	default:
		if small != nil {
			st.recv.pushCopy(small)
		}
		for _, c := range chunks {
			st.recv.push(c)
		}
		st.cond.Broadcast()
	}
	f := st.applyFlagsLocked(fl)
	st.mu.Unlock()
	a.releaseSyn = a.releaseSyn || f.releaseSyn
	a.forget = a.forget || f.forget
	st.apply(a)
}

// addSendWindow applies a received WindowUpdate: delta more bytes may be
// sent. A delta that would overflow the 32-bit window is a protocol error.
func (st *Stream) addSendWindow(delta uint32, fl flags) error {
	st.mu.Lock()
	if uint64(st.sendWindow)+uint64(delta) > math.MaxUint32 {
		st.mu.Unlock()
		return fmt.Errorf("%w: window update of %d overflows stream %d's window of %d", ErrProtocol, delta, st.id, st.sendWindow)
	}
	st.sendWindow += delta
	if delta > 0 {
		st.cond.Broadcast()
	}
	a := st.applyFlagsLocked(fl)
	st.mu.Unlock()
	st.apply(a)
	return nil
}

func freeChunks(chunks []chunk) {
	for _, c := range chunks {
		putBlock(c.buf)
	}
}
