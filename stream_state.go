package yamux

import (
	"errors"
	"fmt"
	"time"
)

// This file is the stream's state machine: every change of a stream's
// state, whether a frame arrived, the application called a method or a
// timer fired, is an event that goes through next, a pure function from
// (state, event) to (new state, effects). next is tested from a table
// (stream_state_test.go); Stream.handleLocked carries out the effects.
// Which frame a change sends, and on which queue, is decided here and
// nowhere else.

// half is the state of one direction of a stream.
type half uint8

const (
	halfOpen  half = iota // bytes may still flow
	halfFIN               // finished cleanly: FIN sent (send half) or received (receive half)
	halfReset             // cut off by a reset, by either end, or by the session's end
)

func (h half) String() string {
	switch h {
	case halfOpen:
		return "open"
	case halfFIN:
		return "fin"
	case halfReset:
		return "reset"
	}
	return "?"
}

// streamState is everything next decides on.
type streamState struct {
	send, recv half
	closed     bool // Close was called: Read and Write fail with ErrStreamClosed
	readShut   bool // CloseRead was called: received data is dropped (and credited)
	acked      bool // the ACK was received (opener) or queued (acceptor)
	forgotten  bool // removed from the session's table: the wire is done with it
}

// event is what happened to a stream.
type event uint8

const (
	evCloseWrite   event = iota // the application half-closed: FIN after what was written
	evClose                     // the application closed: Close
	evCloseRead                 // the application stopped reading
	evReset                     // the application reset the stream
	evAck                       // the opener got the ACK, or the acceptor queued it
	evData                      // the peer sent payload (already admitted to the window)
	evFIN                       // the peer's FIN arrived
	evRST                       // the peer's RST arrived
	evOpenTimeout               // no ACK within StreamOpenTimeout
	evCloseTimeout              // no FIN from the peer within StreamCloseTimeout of ours
	evSessionEnd                // the session ended
)

var eventNames = [...]string{"CloseWrite", "Close", "CloseRead", "Reset", "Ack", "Data", "FIN", "RST", "OpenTimeout", "CloseTimeout", "SessionEnd"}

func (e event) String() string { return eventNames[e] }

// effect is one thing a transition asks Stream.handleLocked to do.
type effect uint16

const (
	effWake          effect = 1 << iota // wake blocked Reads and Writes
	effDiscard                          // drop unread data; credit it back while the peer may send
	effDrop                             // drop the payload of this evData (not buffered)
	effCredit                           // credit this evData's payload back (CloseRead)
	effBuffer                           // buffer this evData's payload for Read
	effFIN                              // queue our FIN behind our data
	effRST                              // send RST ahead of queued data (nothing of ours is worth keeping)
	effRSTInOrder                       // send RST behind our queued data and FIN (they stay complete, spec.md §3.4)
	effCloseTimer                       // start the StreamCloseTimeout timer
	effStopOpenTimer                    // the open timer is no longer needed
	effForget                           // remove the stream from the session's table
	effFail                             // set the stream's error (a reset or the session's end)
)

// next is the stream's transition function. It never fails: an event
// that does not apply in a state changes nothing.
func next(s streamState, ev event) (streamState, effect) {
	var e effect
	switch ev {
	case evCloseWrite:
		if s.send == halfOpen {
			s.send = halfFIN
			e |= effFIN | effWake
			if s.recv == halfOpen {
				e |= effCloseTimer
			}
		}
	case evClose:
		if !s.closed {
			s.closed = true
			e |= effDiscard | effWake
		}
		if s.send == halfOpen {
			s.send = halfFIN
			e |= effFIN
			if s.recv == halfOpen {
				e |= effCloseTimer
			}
		}
	case evCloseRead:
		if !s.readShut {
			s.readShut = true
			e |= effDiscard | effWake
		}
	case evReset:
		// The application abandons the stream: even a receive half the
		// peer finished is given up, so later Reads fail (never a clean
		// io.EOF after data was thrown away).
		if s.send == halfReset && s.recv == halfReset {
			break
		}
		if !s.forgotten {
			e |= effRSTInOrder
		}
		s.send, s.recv = halfReset, halfReset
		e |= effDiscard | effWake | effFail
	case evAck:
		if !s.acked {
			s.acked = true
			e |= effStopOpenTimer
		}
	case evData:
		switch {
		case s.send == halfReset || s.recv == halfReset:
			e |= effDrop
		case s.closed:
			// Nobody will ever read it: reset, behind the FIN that
			// Close queued, so the peer still gets our data whole.
			e |= effDrop | effRSTInOrder | effWake | effFail
			s.send, s.recv = halfReset, halfReset
		case s.readShut:
			e |= effDrop | effCredit
		default:
			e |= effBuffer | effWake
		}
	case evFIN:
		if s.recv == halfOpen {
			s.recv = halfFIN
			e |= effWake
		}
	case evRST:
		// The peer abandons the stream. What it finished with a FIN is
		// complete and stays readable up to io.EOF (spec.md §3.4).
		if s.send == halfReset && s.recv == halfReset {
			break
		}
		if s.recv == halfOpen {
			s.recv = halfReset
			e |= effDiscard
		}
		s.send = halfReset
		e |= effWake | effFail | effStopOpenTimer
	case evOpenTimeout:
		if !s.acked && s.send != halfReset {
			// The peer may not know the stream: nothing of ours queued
			// for it is worth keeping, so the RST goes first.
			s.send, s.recv = halfReset, halfReset
			e |= effRST | effDiscard | effWake | effFail
		}
	case evCloseTimeout:
		if s.recv == halfOpen && s.send != halfReset {
			s.send, s.recv = halfReset, halfReset
			e |= effRSTInOrder | effDiscard | effWake | effFail
		}
	case evSessionEnd:
		// What already arrived stays readable, then Read reports the
		// session's end (or io.EOF, if the peer's FIN had arrived).
		if s.recv == halfOpen {
			s.recv = halfReset
			e |= effWake | effFail
		}
		if s.send != halfReset {
			s.send = halfReset
			e |= effWake | effFail
		}
		s.forgotten = true // the session cleared its table itself
		e |= effStopOpenTimer
	}
	if !s.forgotten && s.send != halfOpen && s.recv != halfOpen {
		s.forgotten = true
		e |= effForget | effStopOpenTimer
	}
	return s, e
}

// handleLocked applies ev to the stream and carries out its effects that
// need only st.mu: buffers dropped, frames listed or queued for the send
// loop (whose queue lock is a leaf), timers, wake-ups. err is the stream's
// error if ev cuts it off (nil: ErrStreamReset). It returns whether the
// stream must now leave the session's table, which the caller does with
// finish after releasing st.mu (Session.mu is never taken under
// Stream.mu). Call with st.mu held; evData's payload is the caller's (see
// deliver).
func (st *Stream) handleLocked(ev event, err error) (forget bool) {
	var e effect
	st.state, e = next(st.state, ev)
	st.applyLocked(e, err)
	return e&effForget != 0
}

// applyLocked carries out the effects of one transition except forgetting
// (handleLocked) and what evData does with its payload (deliver).
func (st *Stream) applyLocked(e effect, err error) {
	if e&effFail != 0 && st.err == nil {
		if err == nil {
			err = ErrStreamReset
		}
		st.err = err
		if errors.Is(err, ErrStreamReset) {
			st.sess.stats.streamsReset.Add(1)
		}
	}
	if e&effDiscard != 0 {
		n := uint32(st.recv.size)
		st.recv.reset()
		if st.state.recv == halfOpen {
			if c := st.in.discard(n); c > 0 {
				st.queueCreditLocked(c)
			}
		}
	}
	if e&effFIN != 0 {
		st.sess.sq.pushData(st, st.sess.frames.get(encodeHeader(typeData, flagFIN, st.id, 0), nil, false))
	}
	if e&effRST != 0 {
		st.ctrl.rst = true
		st.ctrl.credit = 0
		st.listCtrlLocked()
		// What we queued behind the RST never goes out: a Write waiting
		// for it returns the stream's error now, not when (or if) a
		// stuck connection drains, and reports none of it written.
		for _, f := range st.sess.sq.dropQueued(st) {
			if len(f.body) > 0 {
				st.bytesSent -= uint64(len(f.body))
				st.framesSent--
			}
			st.sess.finishFrame(f, errFrameDropped)
		}
	}
	if e&effRSTInOrder != 0 {
		st.sess.sq.pushData(st, st.sess.frames.get(encodeHeader(typeWindowUpdate, flagRST, st.id, st.rstCode), nil, false))
	}
	if e&effCloseTimer != 0 {
		st.startCloseTimerLocked()
	}
	if e&(effStopOpenTimer|effForget) != 0 {
		stopTimer(st.openTimer)
		st.openTimer = nil // an idle stream keeps no timer
	}
	if e&effForget != 0 {
		stopTimer(st.closeTimer)
		st.closeTimer = nil
	}
	if e&effWake != 0 {
		st.cond.Broadcast()
	}
}

// finish removes the stream from the session's table when handleLocked
// said so. Call without st.mu.
func (st *Stream) finish(forget bool) {
	if forget {
		st.sess.forgetStream(st)
	}
}

// queueCreditLocked owes the peer c more bytes of window. Call with st.mu
// held.
func (st *Stream) queueCreditLocked(c uint32) {
	if st.ctrl.rst || st.state.recv != halfOpen {
		return // the peer will send nothing more
	}
	st.ctrl.credit += c
	st.listCtrlLocked()
}

// queueOpenLocked owes the peer our SYN (opener) or ACK (acceptor), with
// the window we grant beyond the protocol's initial one. Call with st.mu
// held.
func (st *Stream) queueOpenLocked(fl flags) {
	st.ctrl.open = fl
	st.ctrl.delta = st.in.size - initialStreamWindow
	st.listCtrlLocked()
}

// listCtrlLocked lists the stream with the send loop, once until the send
// loop takes its frames. Call with st.mu held.
func (st *Stream) listCtrlLocked() {
	if !st.ctrl.queued {
		st.ctrl.queued = true
		st.sess.sq.pushStream(st)
	}
}

// takeCtrl appends the control frames the stream owes to hs and clears
// them: the send loop's side of ctrlDue. SYN or ACK comes first and carries
// the credit with it; an RST makes credit pointless.
func (st *Stream) takeCtrl(hs []header) []header {
	st.mu.Lock()
	d := st.ctrl
	st.ctrl = ctrlDue{}
	st.mu.Unlock()
	credit := d.credit
	if d.open != 0 {
		hs = append(hs, encodeHeader(typeWindowUpdate, d.open, st.id, d.delta+credit))
		credit = 0
	}
	switch {
	case d.rst:
		hs = append(hs, encodeHeader(typeWindowUpdate, flagRST, st.id, 0))
	case credit > 0:
		hs = append(hs, encodeHeader(typeWindowUpdate, 0, st.id, credit))
	}
	return hs
}

// abort cuts the stream off because the session ended with err. The
// session has already cleared its table.
func (st *Stream) abort(err error) {
	st.mu.Lock()
	st.handleLocked(evSessionEnd, err)
	stopTimer(st.closeTimer)
	st.closeTimer = nil
	st.mu.Unlock()
}

// accept queues the ACK of a stream the peer opened, once, and reports
// false when the stream was already cut off (no ACK is then sent: it would
// only name a stream the peer has forgotten).
func (st *Stream) accept() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.state.acked || st.state.send == halfReset {
		return false
	}
	st.handleLocked(evAck, nil)
	st.queueOpenLocked(flagACK)
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
	if st.state.acked || st.state.forgotten {
		return
	}
	st.openTimer = time.AfterFunc(d, func() {
		st.mu.Lock()
		forget := st.handleLocked(evOpenTimeout, ErrStreamOpenTimeout)
		st.mu.Unlock()
		st.finish(forget)
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
		forget := st.handleLocked(evCloseTimeout, nil)
		st.mu.Unlock()
		st.finish(forget)
	})
}

// flagsLocked applies ACK, FIN and RST from a received frame, in that
// order. It reports whether our SYN token is to be returned and whether
// the stream is to be forgotten.
func (st *Stream) flagsLocked(fl flags) (releaseSyn, forget bool) {
	if fl&flagACK != 0 && st.opened && !st.state.acked {
		forget = st.handleLocked(evAck, nil) || forget
		if st.synToken {
			st.synToken = false
			releaseSyn = true
		}
	}
	if fl&flagFIN != 0 {
		forget = st.handleLocked(evFIN, nil) || forget
	}
	if fl&flagRST != 0 {
		forget = st.handleLocked(evRST, ErrStreamReset) || forget
	}
	return releaseSyn, forget
}

// afterFlags does, without st.mu, what flagsLocked decided.
func (st *Stream) afterFlags(releaseSyn, forget bool) {
	if releaseSyn {
		<-st.sess.synSem
	}
	st.finish(forget)
}

// admitData checks an incoming Data frame of n bytes against the stream's
// state and window before its payload is read, and takes the window. It
// reports whether the payload is to be dropped (nobody will read it).
func (st *Stream) admitData(n uint32) (drop bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.state.recv == halfFIN && n > 0 {
		// An empty Data frame after FIN is tolerated: a repeated FIN, or
		// an RST carried on Data (rust-yamux does that).
		return false, fmt.Errorf("%w: data on stream %d after its FIN", ErrProtocol, st.id)
	}
	if err := st.in.take(n); err != nil {
		return false, fmt.Errorf("stream %d: %w", st.id, err)
	}
	st.bytesReceived += uint64(n)
	st.framesReceived++
	return st.state.recv == halfReset || st.state.send == halfReset || st.state.closed || st.state.readShut, nil
}

// deliver hands a received payload (already admitted) and the frame's
// flags to the stream.
//
// The payload is either chunks (pooled blocks, taken over) or small (a
// few bytes in the receive loop's scratch, copied into the buffer's last
// block): a peer sending tiny frames then costs its bytes, not a block per
// frame.
func (st *Stream) deliver(chunks []chunk, small []byte, n uint32, fl flags) {
	st.mu.Lock()
	forget := false
	if n > 0 {
		var e effect
		st.state, e = next(st.state, evData)
		st.applyLocked(e, nil)
		forget = e&effForget != 0
		switch {
		case e&effBuffer != 0:
			if small != nil {
				st.recv.pushCopy(small)
			}
			for _, c := range chunks {
				st.recv.push(c)
			}
		case e&effCredit != 0:
			freeChunks(chunks)
			if c := st.in.consume(n, 0, time.Time{}, 0, noBudget{}); c > 0 {
				st.queueCreditLocked(c)
			}
		default:
			freeChunks(chunks)
		}
	}
	releaseSyn, forgetByFlags := st.flagsLocked(fl)
	st.mu.Unlock()
	st.afterFlags(releaseSyn, forget || forgetByFlags)
}

// addSendWindow applies a received WindowUpdate: delta more bytes may be
// sent. A delta that would overflow the 32-bit window is a protocol error.
func (st *Stream) addSendWindow(delta uint32, fl flags) error {
	st.mu.Lock()
	if err := st.out.add(delta); err != nil {
		st.mu.Unlock()
		return fmt.Errorf("stream %d: %w", st.id, err)
	}
	if delta > 0 {
		st.cond.Broadcast()
	}
	releaseSyn, forget := st.flagsLocked(fl)
	st.mu.Unlock()
	st.afterFlags(releaseSyn, forget)
	return nil
}

// noBudget refuses every reservation: for a window that must not grow.
type noBudget struct{}

func (noBudget) limit() uint32       { return 0 }
func (noBudget) reserve(uint32) bool { return false }

func freeChunks(chunks []chunk) {
	for _, c := range chunks {
		putBlock(c.buf)
	}
}
