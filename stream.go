package yamux

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"time"
)

// maxDataFrame is the largest Data payload we send. rust-yamux rejects
// frames over 1 MiB; at 256 KiB (the initial window) a stream of 1 MiB
// Writes measured 30% faster than at 64 KiB, which spent the difference on
// send-loop hand-offs. Streams still interleave frame by frame.
const maxDataFrame = 256 << 10

// Stream is one bidirectional stream of a [Session]. It is a [net.Conn]
// with half-close ([Stream.CloseWrite], [Stream.CloseRead]) and reset
// ([Stream.Reset]). All methods are safe for concurrent use; concurrent
// Writes are serialised, each written whole before the next starts.
//
// Its state changes only through handleLocked (stream_state.go), under mu.
type Stream struct {
	id   uint32   // immutable
	sess *Session // immutable

	writeMu sync.Mutex // serialises Writes; held for a whole Write, taken before mu

	mu   sync.Mutex
	cond sync.Cond // on mu; broadcast on every change a Read or Write waits for

	// Guarded by mu.
	state    streamState
	opened   bool  // immutable after newStream: we opened it (we wait for the peer's ACK)
	synToken bool  // holds a Session.synSem token until the ACK arrives or the stream is forgotten
	err      error // why the stream was cut off; set with the halves' reset
	ctrl     ctrlDue
	recv     recvBuffer
	in       inflow
	out      outflow

	rstCode uint32 // guarded by mu: the code our in-order RST carries (ResetWithCode)

	bytesSent, bytesReceived   uint64
	framesSent, framesReceived uint64

	readDeadline  time.Time
	writeDeadline time.Time
	openTimer     *time.Timer // until the ACK arrives
	closeTimer    *time.Timer // until the peer's FIN arrives after ours

	// Guarded by Session.sq.mu, not mu: the stream's place in the send
	// queue's round robin.
	outq   frameFIFO
	inRing bool
}

var _ net.Conn = (*Stream)(nil)

func newStream(s *Session, id uint32, opened bool) *Stream {
	st := &Stream{
		id:       id,
		sess:     s,
		opened:   opened,
		synToken: opened,
		in:       newInflow(s.cfg.InitialStreamWindowSize),
		out:      outflow{avail: initialStreamWindow},
	}
	st.cond.L = &st.mu
	return st
}

// StreamID returns the stream's ID: odd for streams the client opened.
func (st *Stream) StreamID() uint32 { return st.id }

// Session returns the session the stream belongs to.
func (st *Stream) Session() *Session { return st.sess }

// LocalAddr returns the session's local address.
func (st *Stream) LocalAddr() net.Addr { return st.sess.LocalAddr() }

// RemoteAddr returns the session's remote address.
func (st *Stream) RemoteAddr() net.Addr { return st.sess.RemoteAddr() }

// Read reads data the peer sent. It blocks until data arrives, the peer
// half-closes (then [io.EOF], after all data before the FIN), the stream is
// reset ([ErrStreamReset]), the read deadline passes ([ErrTimeout]), the
// stream is closed ([ErrStreamClosed]) or the session ends (an error
// wrapping [ErrSessionShutdown]). A stream that was cut off never reports a
// clean io.EOF: io.EOF means the peer's FIN arrived and nothing before it
// was discarded.
func (st *Stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	var timer *time.Timer
	for {
		if st.state.closed || st.state.readShut {
			st.mu.Unlock()
			stopTimer(timer)
			return 0, ErrStreamClosed
		}
		if st.recv.size > 0 {
			break
		}
		switch st.state.recv {
		case halfFIN:
			st.mu.Unlock()
			stopTimer(timer)
			return 0, io.EOF
		case halfReset:
			err := st.err
			st.mu.Unlock()
			stopTimer(timer)
			return 0, err
		}
		if len(p) == 0 {
			st.mu.Unlock()
			return 0, nil
		}
		var err error
		if timer, err = st.waitLocked(st.readDeadline, timer); err != nil {
			st.mu.Unlock()
			return 0, err
		}
	}
	n := st.recv.read(p)
	credited := false
	if st.state.recv == halfOpen {
		// An open receive half means the stream is still in the table, so
		// growth can be reserved (a forgotten stream's window went back).
		b := growthBudget{st.sess} // growthCap, MaxReceiveBuffer and the MemoryManager
		rtt := time.Duration(st.sess.rtt.Load())
		if c := st.in.consume(uint32(n), st.recv.size, time.Now(), rtt, b); c > 0 {
			st.queueCreditLocked(c)
			credited = true
		}
	}
	st.mu.Unlock()
	stopTimer(timer)
	if credited {
		// Let the send loop write the credit now, not when this reader
		// next blocks: the send loop this credit woke runs next on our
		// processor only when we block or yield, and a reader with a
		// backlog does not block until it has read all of it, while the
		// peer, out of window, waits for the credit (64 streams: some
		// sat at zero window for 5-20 ms; bench/README.md, "Stalled
		// streams"). Readers with backlogs so also take turns a quarter
		// window at a time. One scheduler pass per credit.
		runtime.Gosched()
	}
	return n, nil
}

// Write writes p as one or more Data frames, each at most the peer's
// remaining window. It blocks while the window is exhausted and until the
// send loop has written every frame: the frames point into p, which is
// not copied into a buffer of ours before the send loop writes it (it then
// copies payloads up to 4 KiB into its batch, and writes larger ones in
// place). It returns [ErrStreamClosed] after Close or CloseWrite,
// [ErrStreamReset], [ErrTimeout] when the write deadline passes while it
// waits for window, or an error wrapping [ErrSessionShutdown]; n counts
// the bytes that reached the connection.
func (st *Stream) Write(p []byte) (int, error) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	// Frames are queued as the window allows and waited for together, so
	// that the send loop writes a large Write in few vectored writes while
	// this goroutine already waits for more window.
	var w pendingWrites
	for len(p) > 0 {
		f, n, err := st.queueData(p)
		if err != nil {
			return w.finish(st, err)
		}
		w.add(f, n)
		if w.full() {
			if _, err := w.finish(st, nil); err != nil {
				return w.written, err
			}
		}
		p = p[n:]
	}
	if w.queued == 0 && w.written == 0 {
		// A zero-length Write still reports a closed or reset stream.
		st.mu.Lock()
		err := st.writableLocked()
		st.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return w.finish(st, nil)
}

// queueData waits until the peer's window has room, takes up to len(p)
// bytes of it (at most maxDataFrame) and queues them as one Data frame for
// the send loop. Taking the window and queueing happen under one hold of
// st.mu, so a FIN queued by Close or CloseWrite can never overtake data
// whose window was already taken.
func (st *Stream) queueData(p []byte) (*outFrame, int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var timer *time.Timer
	defer func() { stopTimer(timer) }()
	for {
		if err := st.writableLocked(); err != nil {
			return nil, 0, err
		}
		if !st.writeDeadline.IsZero() && !time.Now().Before(st.writeDeadline) {
			return nil, 0, ErrTimeout
		}
		if n := st.out.take(len(p), maxDataFrame); n > 0 {
			st.bytesSent += uint64(n)
			st.framesSent++
			f := st.sess.frames.get(encodeHeader(typeData, 0, st.id, n), p[:n], true)
			st.sess.sq.pushData(st, f)
			return f, int(n), nil
		}
		var err error
		if timer, err = st.waitLocked(st.writeDeadline, timer); err != nil {
			return nil, 0, err
		}
	}
}

// writableLocked returns why nothing more may be written, or nil. Call
// with st.mu held.
func (st *Stream) writableLocked() error {
	switch {
	case st.state.closed:
		return ErrStreamClosed
	case st.state.send == halfReset:
		return st.err
	case st.state.send == halfFIN:
		return ErrStreamClosed
	}
	return nil
}

// maxInFlight bounds the frames one Write has queued but not yet seen
// written.
const maxInFlight = 16

// pendingWrites tracks the frames of one Write that are queued.
type pendingWrites struct {
	frames  [maxInFlight]*outFrame
	sizes   [maxInFlight]int
	queued  int
	written int // bytes in frames the send loop reported written
}

func (w *pendingWrites) add(f *outFrame, n int) {
	w.frames[w.queued], w.sizes[w.queued] = f, n
	w.queued++
}

func (w *pendingWrites) full() bool { return w.queued == maxInFlight }

// finish waits for every queued frame (the caller's buffer must not be
// returned to it while the send loop may still read it) and returns the
// bytes written and the first error, err if it came first. When the write
// deadline passes first, the frames the send loop has not taken yet are
// recalled and their window given back, and one it is writing is let go of
// (see SetWriteDeadline): n then counts exactly the bytes that will reach
// the peer, and the stream stays usable.
func (w *pendingWrites) finish(st *Stream, err error) (int, error) {
	s := st.sess
	st.mu.Lock()
	deadline := st.writeDeadline
	st.mu.Unlock()
	var frameErr error
	late := false // the deadline passed with frames of ours still unwritten
	for i := 0; i < w.queued; i++ {
		werr, recalled, passed := s.waitBy(st, w.frames[i], deadline, w.frames[i:w.queued])
		late = late || passed
		if werr == errDetached {
			// They go out ahead of a FIN queued behind them, from copies.
			for j := i; j < w.queued; j++ {
				w.written += w.sizes[j]
				w.frames[j] = nil
			}
			break
		}
		if recalled {
			st.giveBack(w.frames[i:w.queued])
			for j := i; j < w.queued; j++ {
				s.frames.put(w.frames[j])
				w.frames[j] = nil
			}
			w.queued = 0
			return w.written, ErrTimeout
		}
		w.frames[i] = nil
		if werr != nil && frameErr == nil {
			frameErr = werr
		}
		if frameErr == nil {
			w.written += w.sizes[i]
		}
	}
	w.queued = 0
	if frameErr == errFrameDropped {
		st.mu.Lock()
		frameErr = st.err // the reset's (ErrStreamOpenTimeout), even after a Close
		st.mu.Unlock()
		if frameErr == nil {
			frameErr = ErrStreamReset
		}
	}
	if frameErr != nil {
		return w.written, frameErr
	}
	if err == nil && late {
		// Some frames were let go of at the deadline: their bytes are
		// counted (they go out with the batch that holds them), but the
		// deadline passed before they were written.
		err = ErrTimeout
	}
	return w.written, err
}

// giveBack returns the window of recalled frames: they were never sent.
func (st *Stream) giveBack(fs []*outFrame) {
	st.mu.Lock()
	for _, f := range fs {
		n := uint32(len(f.body))
		st.out.giveBack(n)
		st.bytesSent -= uint64(n)
		st.framesSent--
	}
	st.cond.Broadcast()
	st.mu.Unlock()
}

// waitLocked waits on st.cond until something changes or deadline passes.
// It arms one timer per blocked call (timer, returned for reuse) that
// broadcasts at the deadline. Call with st.mu held.
func (st *Stream) waitLocked(deadline time.Time, timer *time.Timer) (*time.Timer, error) {
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			stopTimer(timer)
			return nil, ErrTimeout
		}
		if timer == nil {
			timer = time.AfterFunc(d, st.wake)
		} else {
			timer.Reset(d)
		}
	}
	st.cond.Wait()
	return timer, nil
}

// wake wakes every goroutine blocked on the stream so that it re-checks.
func (st *Stream) wake() {
	st.mu.Lock()
	st.cond.Broadcast()
	st.mu.Unlock()
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// CloseWrite half-closes the stream: it queues FIN after everything
// written so far and returns without waiting for it to be written, like a
// TCP shutdown. It does not wait for a Write in progress either: the FIN
// follows the bytes that Write has already queued, and the Write then
// fails with [ErrStreamClosed] (its n counts what went out before the
// FIN). The stream can still be read. It returns nil when already
// half-closed, and [ErrStreamReset] or a session error when the stream was
// cut off.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	err := st.writableLocked()
	if errors.Is(err, ErrStreamClosed) {
		err = nil // already half-closed or closed: the FIN is queued
	}
	forget := st.handleLocked(evCloseWrite, nil)
	st.mu.Unlock()
	st.finish(forget)
	return err
}

// CloseRead discards what was received and stops Read: further Reads return
// [ErrStreamClosed]. Data that still arrives is dropped but credited, so the
// peer's writes do not stall; use Reset to stop the peer instead.
func (st *Stream) CloseRead() error {
	st.mu.Lock()
	forget := st.handleLocked(evCloseRead, nil)
	st.mu.Unlock()
	st.finish(forget)
	return nil
}

// Close closes the stream as net.Conn requires: later Reads and Writes
// fail with [ErrStreamClosed] and blocked ones return. It queues FIN after
// what was written (a Write in progress stops after the frames it already
// queued) and returns without waiting for anything. Unread data is dropped
// and its window credited back; if the peer then still sends data, nobody
// will read it, so the stream is reset, behind our FIN. It returns nil, or
// the session's error when the session had ended.
func (st *Stream) Close() error {
	st.mu.Lock()
	var err error
	if st.state.send == halfReset && !errors.Is(st.err, ErrStreamReset) {
		err = st.err // the session ended under the stream
	}
	forget := st.handleLocked(evClose, nil)
	st.mu.Unlock()
	st.finish(forget)
	return err
}

// Reset aborts the stream in both directions: it sends RST, and blocked and
// later Reads and Writes fail with [ErrStreamReset] on both ends. Data not
// yet read is discarded, even data the peer completed with its FIN. The
// RST follows what this stream already queued (a FIN from CloseWrite among
// it) and is not waited for. To send an error code with the RST, use
// [Stream.ResetWithCode].
func (st *Stream) Reset() error {
	st.mu.Lock()
	forget := st.handleLocked(evReset, ErrStreamReset)
	st.mu.Unlock()
	st.finish(forget)
	return nil
}

// SetDeadline sets both the read and the write deadline; see net.Conn.
func (st *Stream) SetDeadline(t time.Time) error {
	st.mu.Lock()
	st.readDeadline, st.writeDeadline = t, t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

// SetReadDeadline sets the read deadline; a blocked Read re-checks it.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.readDeadline = t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the write deadline. A Write blocked on the window
// re-checks it. A Write whose frames are queued returns at the deadline in
// force when it started waiting, even when the connection does not drain:
// frames the send loop has not taken are taken back and their window given
// back; a frame the send loop is writing is let go of (the send loop
// interrupts its write and copies the rest, so the frame still reaches
// the peer whole and the caller may reuse its buffer). The Write then
// returns [ErrTimeout] with n counting exactly the bytes that will reach
// the peer if the session survives, and the stream stays usable. Over TLS
// (where a write that hits a deadline breaks the connection for good) the
// send loop copies every frame into its batch, so the writer goes at its
// deadline without the write being interrupted. On a connection without
// SetWriteDeadline, a frame being written is waited for. Frames that a
// Close or CloseWrite queued a FIN behind are not taken back (the FIN must
// not go out without them): they go out from copies.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.writeDeadline = t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}
