package yamux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Batch limits: one write to the connection carries at most this many frames
// or payload bytes, so that a waiting control frame is never far behind.
const (
	maxBatchFrames = 64
	maxBatchBytes  = 1 << 20

	// coalesceLimit: payloads up to this size are copied into the batch
	// buffer together with the headers around them (one segment); larger
	// ones are written in place as their own segment.
	coalesceLimit = 4 << 10
)

// sendBatch is the send loop's private state for one write.
type sendBatch struct {
	// ctrl frames are written before data frames of the same batch. That
	// order is what lets OpenStream and AcceptStream list SYN and ACK
	// without waiting: the stream's first data, queued after them, can at
	// worst be taken into the same batch, never an earlier one (see
	// sendQueue.take, which takes every listed stream with the data).
	ctrl      []header
	streams   []*Stream // streams whose control frames go into ctrl
	data      []*outFrame
	dataBytes int
	buf       []byte      // headers and small payloads, copied; nil while idle
	bufp      *[]byte     // the pooled slice buf came from
	vec       net.Buffers // segments of the write: slices of buf and large payloads
	owners    []*outFrame // owners[i]: the frame whose body vec[i] is, nil for buf
	wv        net.Buffers // what WriteTo consumes; a field so that it does not escape
}

// batchBufSize is the room for headers and small payloads of one batch.
const batchBufSize = 64 << 10

// batchBufs lends batch buffers to busy send loops: an idle session holds
// none (batch.idle gives it back).
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

// idle gives the batch's buffer back while the send loop waits for work.
func (b *sendBatch) idle() {
	if b.bufp != nil {
		*b.bufp = b.buf[:0]
		batchBufs.Put(b.bufp)
		b.buf, b.bufp = nil, nil
	}
	clear(b.vec[:cap(b.vec)])
	b.vec = b.vec[:0]
}

// sendLoop is the only writer of the connection. It takes everything queued
// (control frames first: ping answers, window updates, RST, SYN/ACK,
// GoAway; then data) and writes it with one write. It runs only while
// the session sends: a run ends after its idle interval without work
// (sendLoopIdle, or longer for a session whose sends keep coming back),
// holding nothing, and the next frame queued starts a new one
// (sendrun.go), so an idle session has no send goroutine. Runs never
// overlap. The final run, after the session ended, writes what is still
// queued and the final GoAway, then closes the connection.
func (s *Session) sendLoop() {
	b := batches.Get().(*sendBatch)
	for {
		took, final := s.sq.take(b, s.doneCh)
		if !took {
			if final {
				s.finalFlush(b)
				s.endSending(b)
			} else {
				putBatch(b)
			}
			return
		}
		if err := s.writeBatch(b); err != nil {
			s.writeFailed(err)
			s.completeBatch(b, err)
			s.failQueued(err)
			s.endSending(b)
			return
		}
		s.completeBatch(b, nil)
	}
}

// batches lends send loop runs their batch (its slices keep their room
// between runs without an idle session holding them).
var batches = sync.Pool{New: func() any { return new(sendBatch) }}

// putBatch gives a run's batch back, with its buffer, when the run ends.
func putBatch(b *sendBatch) {
	b.idle()
	batches.Put(b)
}

// endSending ends the final run: the connection is closed and waiters are
// told the send loop is gone.
func (s *Session) endSending(b *sendBatch) {
	s.sq.stop()
	putBatch(b)
	s.closeConn()
	close(s.sendDone)
	s.wg.Done()
}
func (b *sendBatch) count() int { return len(b.ctrl) + len(b.data) }

// writeBatch writes every gathered frame with one write; completeBatch
// then reports the outcome.
func (s *Session) writeBatch(b *sendBatch) error {
	for i, st := range b.streams {
		b.ctrl = st.takeCtrl(b.ctrl)
		b.streams[i] = nil
	}
	b.streams = b.streams[:0]
	if b.count() == 0 {
		return nil
	}
	if b.bufp == nil {
		b.bufp = batchBufs.Get().(*[]byte)
		b.buf = *b.bufp
	}
	b.buf = b.buf[:0]
	b.vec, b.owners = b.vec[:0], b.owners[:0]
	for _, h := range b.ctrl {
		b.buf = append(b.buf, h[:]...)
	}
	start := 0
	for _, f := range b.data {
		b.buf = append(b.buf, f.hdr[:]...)
		if len(f.body) <= coalesceLimit || s.stickyWrites {
			// Copied. Over TLS every body is: TLS copies and encrypts
			// anyway, and a copied frame's writer can give up at its
			// deadline while the write blocks (waitBy).
			b.buf = append(b.buf, f.body...)
			continue
		}
		b.vec = append(b.vec, b.buf[start:len(b.buf)], f.body)
		b.owners = append(b.owners, nil, f)
		start = len(b.buf)
	}
	if start < len(b.buf) {
		b.vec = append(b.vec, b.buf[start:])
		b.owners = append(b.owners, nil)
	}
	b.wv = b.vec
	if s.stickyWrites {
		for _, f := range b.data {
			f.copied.Store(true)
			if f.abandon.Load() && !f.released {
				f.released = true
				s.finishFrame(f, nil)
			}
		}
	}
	err := s.writeConn(b)
	if err == nil {
		s.stats.framesSent.Add(uint64(b.count()))
		s.stats.bytesSent.Add(uint64(len(b.ctrl)*headerSize + b.dataBytes))
	}
	return err
}

// completeBatch reports the batch's outcome to each waiting sender and
// recycles the rest. After a failure the send loop calls it only once the
// session is shut down, so that a waiter sees the session's cause.
func (s *Session) completeBatch(b *sendBatch, err error) {
	for i, f := range b.data {
		if !f.released {
			s.finishFrame(f, err)
		}
		b.data[i] = nil
	}
	clear(b.owners)
	b.ctrl, b.data = b.ctrl[:0], b.data[:0]
	b.dataBytes = 0
}

// writeConn writes segments under a write deadline (when the connection
// has deadlines), and decides when a connection that accepts too little is
// dead. The deadline is armed a quarter of ConnectionWriteTimeout ahead;
// moving it costs a timer update, so it is moved only when less than 7/8
// of that is left, not for every batch. Each time it passes during a
// write, the quarter is judged: if the connection took at least
// minWriteProgress/4 bytes in it, it is alive; otherwise it is stalled. The
// session ends with ErrConnectionWriteTimeout once the connection has been
// stalled for a whole ConnectionWriteTimeout. A peer that stops reading is
// so detected between 1 and 1.25 timeouts after our last write that moved
// data (the quarter in which its socket buffers filled counts as alive),
// and a peer that reads a byte now and then cannot stretch it.
func (s *Session) writeConn(b *sendBatch) error {
	vec := &b.wv
	dl, hasDeadline := s.conn.(interface{ SetWriteDeadline(time.Time) error })
	if s.stickyWrites {
		return s.writeConnSticky(vec, dl, hasDeadline)
	}
	quarter := s.cfg.ConnectionWriteTimeout / 4
	blocked := false // a deadline passed during this write
	for {
		if hasDeadline {
			now := time.Now()
			if s.writeDeadline.Sub(now) < quarter-quarter/8 {
				s.writeDeadline = now.Add(quarter)
				s.quarterBytes = 0
				dl.SetWriteDeadline(s.writeDeadline)
				s.reinterrupt(dl)
			}
		}
		n, err := writeAll(s.conn, vec, s.vectored)
		s.quarterBytes += n
		if err == nil {
			// A write that finished without blocking a quarter shows a
			// connection that keeps up; one that only trickled out does
			// not end a stall.
			if !blocked || s.quarterBytes >= minWriteProgress/4 {
				s.stallStart = time.Time{}
			}
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if s.interrupt.Swap(false) {
			// A writer's deadline passed while its frame was in this
			// write (waitBy): let it go, and carry on where we were.
			s.releaseAbandoned(b)
			dl.SetWriteDeadline(s.writeDeadline)
			s.reinterrupt(dl)
			continue
		}
		blocked = true
		switch {
		case s.quarterBytes >= minWriteProgress/4:
			s.stallStart = time.Time{}
		case s.stallStart.IsZero():
			s.stallStart = s.writeDeadline.Add(-quarter)
		}
		if !s.stallStart.IsZero() && time.Since(s.stallStart) >= s.cfg.ConnectionWriteTimeout {
			return ErrConnectionWriteTimeout
		}
		s.writeDeadline = time.Time{} // arm the next quarter
	}
}

// reinterrupt restores an interrupt that a writer asked for while the send
// loop was setting its own deadline, which overwrote the writer's.
func (s *Session) reinterrupt(dl interface{ SetWriteDeadline(time.Time) error }) {
	if s.interrupt.Load() {
		dl.SetWriteDeadline(aLongTimeAgo)
	}
}

// writeConnSticky is writeConn for a connection whose writes fail for good
// once a deadline passes during one (crypto/tls makes every later Write
// return the same error): there a deadline can only declare the
// connection dead. The batch is written in pieces of stickyChunk, and each
// piece must be written within ConnectionWriteTimeout (the deadline is
// moved when less than 7/8 of it is left): a connection that carries less
// than stickyChunk per timeout (6.4 KB/s at the default) is dead. Writes
// are never interrupted for a writer's deadline: over TLS the batch holds
// a copy of every frame, and waitBy lets the writer go from that.
func (s *Session) writeConnSticky(vec *net.Buffers, dl interface{ SetWriteDeadline(time.Time) error }, hasDeadline bool) error {
	timeout := s.cfg.ConnectionWriteTimeout
	for _, seg := range *vec {
		for len(seg) > 0 {
			if hasDeadline {
				now := time.Now()
				if s.writeDeadline.Sub(now) < timeout-timeout/8 {
					s.writeDeadline = now.Add(timeout)
					dl.SetWriteDeadline(s.writeDeadline)
				}
			}
			m := min(len(seg), stickyChunk)
			n, err := s.conn.Write(seg[:m])
			seg = seg[n:]
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return ErrConnectionWriteTimeout
				}
				return err
			}
			if n < m {
				return io.ErrShortWrite
			}
		}
	}
	*vec = (*vec)[:0]
	return nil
}

// stickyChunk is the piece writeConnSticky hands the connection at once.
const stickyChunk = 64 << 10

// releaseAbandoned lets go of the frames in b whose writers gave up at
// their deadline while the frames were being written: what is left of
// their bodies is copied (the rare path: the common one lends the body to
// the write without copying), and each writer is told its frame is
// written, since the copy will reach the peer whole. A frame cannot be cut
// short once its header is out, and so it counts as sent.
func (s *Session) releaseAbandoned(b *sendBatch) {
	done := len(b.vec) - len(b.wv) // segments fully written
	for i, seg := range b.wv {
		f := b.owners[done+i]
		if f == nil || f.released || !f.abandon.Load() {
			continue
		}
		b.wv[i] = append([]byte(nil), seg...)
	}
	for _, f := range b.data {
		if !f.released && f.abandon.Load() {
			f.released = true
			s.finishFrame(f, nil)
		}
	}
}

// interruptWrite makes a connection write in progress return now, so that
// the send loop can release a frame whose writer gave up (waitBy).
func (s *Session) interruptWrite() bool {
	dl, ok := s.conn.(interface{ SetWriteDeadline(time.Time) error })
	if !ok || s.stickyWrites {
		return false
	}
	s.interrupt.Store(true)
	dl.SetWriteDeadline(aLongTimeAgo)
	return true
}

// minWriteProgress is the least a connection must carry per
// ConnectionWriteTimeout to count as alive (see writeConn): 6.4 KB/s at the
// default 10 s.
const minWriteProgress = 64 << 10

// peerCloseGrace is how long a failed write waits for the receive loop to
// end too. When the peer closed the connection, our write may fail before
// we read its last frames; the receive loop then reports the better cause
// (the peer's GoAway code, or its close).
const peerCloseGrace = 100 * time.Millisecond

// writeFailed ends the session after a write error.
func (s *Session) writeFailed(err error) {
	if !errors.Is(err, ErrConnectionWriteTimeout) {
		t := time.NewTimer(peerCloseGrace)
		select {
		case <-s.recvDone:
		case <-s.doneCh:
		case <-t.C:
		}
		t.Stop()
	}
	s.shutdown(fmt.Errorf("yamux: connection write: %w", err), 0, false)
}

// finalFlush writes what was queued before the session ended, then the
// final GoAway if shutdown asked for one. Errors are ignored: the
// connection is being closed either way.
func (s *Session) finalFlush(b *sendBatch) {
	s.mu.Lock()
	code := s.finalGoAway
	s.mu.Unlock()
	for {
		s.sq.mu.Lock()
		empty := s.sq.emptyLocked()
		s.sq.mu.Unlock()
		if empty {
			break
		}
		s.sq.take(b, s.doneCh)
		err := s.writeBatch(b)
		s.completeBatch(b, err)
		if err != nil {
			s.failQueued(err)
			return
		}
	}
	if code != nil {
		b.ctrl = append(b.ctrl, encodeHeader(typeGoAway, 0, 0, uint32(*code)))
		err := s.writeBatch(b)
		s.completeBatch(b, err)
		if err == nil {
			s.linger()
		}
	}
}

// linger half-closes the connection after the final GoAway and waits for
// the peer to close its side, which every yamux implementation does on
// EOF. Closing at once instead could make the kernel answer the peer's
// last frames in flight with a TCP RST, and an RST can destroy our GoAway
// in the peer's receive queue before the peer reads it. The wait is
// bounded by the close timer that shutdown armed.
func (s *Session) linger() {
	cw, ok := s.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	<-s.recvDone
}

// failQueued answers every frame still queued with err after the
// connection failed.
func (s *Session) failQueued(err error) {
	for _, f := range s.sq.drain() {
		if f != nil {
			s.finishFrame(f, err)
		}
	}
}

// finishFrame hands a frame's result to its waiter, or recycles it.
func (s *Session) finishFrame(f *outFrame, err error) {
	if f.wait {
		f.done <- err
	} else {
		s.frames.put(f)
	}
}

// waitBy is wait that, when deadline (if not zero) passes first, recalls
// rest (f and the frames queued after it by the same Write) if the send
// loop has not taken them yet, and reports that it did. Otherwise it waits
// for f to be written. A timer is made only while a frame is waited for.
func (s *Session) waitBy(st *Stream, f *outFrame, deadline time.Time, rest []*outFrame) (err error, recalled, late bool) {
	if deadline.IsZero() {
		return s.wait(f), false, false
	}
	select {
	case err := <-f.done:
		return s.frameResult(f, err), false, false
	default:
	}
	d := time.Until(deadline)
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case err := <-f.done:
			return s.frameResult(f, err), false, false
		case <-s.sendDone:
			return s.wait(f), false, false
		case <-t.C:
		}
	}
	if s.sq.recall(st, rest) {
		return ErrTimeout, true, true
	}
	if s.sq.detach(st, rest) {
		return errDetached, false, true
	}
	// The send loop is writing f: interrupt it so that it copies what is
	// left of f and lets us go (releaseAbandoned). (Or f was dropped with
	// an open timeout's RST, sendQueue.dropQueued: then its result is
	// waiting in f.done, the interrupt costs the send loop one needless
	// re-arm, and f is left to the collector instead of the pool.) Over
	// TLS the batch holds a copy of f already (or will have one at once): then we go
	// without waiting. Neither side recycles an abandoned frame: the send
	// loop may still hold it in its batch while we read its result.
	f.abandon.Store(true)
	if s.stickyWrites {
		if f.copied.Load() {
			return nil, false, true // its bytes are in the batch: they go out with it
		}
	} else {
		s.interruptWrite()
	}
	select {
	case err := <-f.done:
		return s.sendResult(err), false, true
	case <-s.sendDone:
		select {
		case err := <-f.done:
			return s.sendResult(err), false, true
		default:
		}
		return s.Err(), false, true
	}
}

// errFrameDropped is the result of a frame taken off the queue unwritten
// because its stream was reset ahead of its data (sendQueue.dropQueued);
// the waiting Write returns the stream's error instead.
var errFrameDropped = errors.New("yamux: frame dropped by a reset")

// errDetached is waitBy's word that the frames it was given were detached
// (sendQueue.detach): they go out, but nobody waits for them.
var errDetached = errors.New("yamux: frames detached")

// wait blocks until the send loop has written f, or has exited.
func (s *Session) wait(f *outFrame) error {
	select {
	case err := <-f.done:
		return s.frameResult(f, err)
	case <-s.sendDone:
		// The send loop is gone and will not touch f again. It may have
		// written f just before it exited: both cases were ready and
		// select chose this one, so look at f's result first.
		select {
		case err := <-f.done:
			return s.frameResult(f, err)
		default:
		}
		return s.Err()
	}
}

// frameResult recycles a written frame and turns the send loop's result
// into what the waiting caller returns.
func (s *Session) frameResult(f *outFrame, err error) error {
	s.frames.put(f)
	return s.sendResult(err)
}

// sendResult turns the send loop's result for a frame into what its waiter
// returns.
func (s *Session) sendResult(err error) error {
	if err == nil || err == errFrameDropped {
		return err
	}
	if cause := s.Err(); cause != nil {
		return cause
	}
	return sessionError(err)
}
