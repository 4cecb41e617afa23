package yamux

import (
	"errors"
	"fmt"
	"net"
	"os"
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
	// order is what lets OpenStream and AcceptStream queue SYN and ACK on
	// the control queue without waiting: the stream's first data, queued
	// after them, can at worst be taken into the same batch, never an
	// earlier one (see gather).
	ctrl  []*outFrame
	data  []*outFrame
	bytes int
	buf   []byte      // headers and small payloads, copied
	vec   net.Buffers // segments of the write: slices of buf and large payloads
	wv    net.Buffers // what WriteTo consumes; a field so that it does not escape
}

// sendLoop is the only writer of the connection. It takes control frames
// first (ping replies, window updates, RST, SYN/ACK, GoAway), then data, and
// writes everything it has gathered with one write. When the session ends it
// writes what is still queued and the final GoAway, then closes the
// connection.
func (s *Session) sendLoop() {
	defer s.wg.Done()
	defer close(s.sendDone)
	defer s.closeConn()

	b := &sendBatch{buf: make([]byte, 0, 64<<10)}
	for {
		select {
		case f := <-s.ctrlCh:
			b.addCtrl(f)
		case f := <-s.dataCh:
			b.addData(f)
		case opaque := <-s.pingAcks:
			b.addCtrl(s.pingAckFrame(opaque))
		case <-s.doneCh:
			s.finalFlush(b)
			return
		}
		s.gather(b)
		if err := s.writeBatch(b); err != nil {
			s.writeFailed(err)
			s.completeBatch(b, err)
			s.failQueued(err)
			return
		}
		s.completeBatch(b, nil)
	}
}

// gather adds whatever else is queued, within the batch limits: a few ping
// answers first (round trips must not wait behind bulk data), then control
// frames before data, then more ping answers if there is room. A ping
// flood can take at most a quarter of a batch from the other frames.
//
// Last it takes every control frame queued by then, past the limits. A
// SYN or ACK is queued before its stream's first data, so if that data is
// in this batch, its SYN or ACK is in the control queue already and lands
// in the same batch, which writes control frames first.
func (s *Session) gather(b *sendBatch) {
	s.gatherPings(b, maxBatchFrames/4)
	for b.count() < maxBatchFrames {
		select {
		case f := <-s.ctrlCh:
			b.addCtrl(f)
			continue
		default:
		}
		if b.bytes >= maxBatchBytes {
			break
		}
		select {
		case f := <-s.dataCh:
			b.addData(f)
			continue
		default:
		}
		break
	}
	s.gatherPings(b, maxBatchFrames)
	for range ctrlQueueLen { // at most what the queue held when we started
		select {
		case f := <-s.ctrlCh:
			b.addCtrl(f)
			continue
		default:
		}
		break
	}
}

// gatherPings adds queued ping answers while the batch has fewer than
// limit frames.
func (s *Session) gatherPings(b *sendBatch, limit int) {
	for b.count() < limit {
		select {
		case opaque := <-s.pingAcks:
			b.addCtrl(s.pingAckFrame(opaque))
		default:
			return
		}
	}
}

func (s *Session) pingAckFrame(opaque uint32) *outFrame {
	return s.frames.get(encodeHeader(typePing, flagACK, 0, opaque), nil, false)
}

func (b *sendBatch) addCtrl(f *outFrame) {
	b.ctrl = append(b.ctrl, f)
	b.bytes += headerSize + len(f.body)
}

func (b *sendBatch) addData(f *outFrame) {
	b.data = append(b.data, f)
	b.bytes += headerSize + len(f.body)
}

func (b *sendBatch) count() int { return len(b.ctrl) + len(b.data) }

// writeBatch writes every gathered frame with one write; completeBatch
// then reports the outcome.
func (s *Session) writeBatch(b *sendBatch) error {
	if b.count() == 0 {
		return nil
	}
	b.buf = b.buf[:0]
	b.vec = b.vec[:0]
	start := 0
	for _, frames := range [2][]*outFrame{b.ctrl, b.data} {
		for _, f := range frames {
			b.buf = append(b.buf, f.hdr[:]...)
			if len(f.body) <= coalesceLimit {
				b.buf = append(b.buf, f.body...)
				continue
			}
			b.vec = append(b.vec, b.buf[start:len(b.buf)], f.body)
			start = len(b.buf)
		}
	}
	if start < len(b.buf) {
		b.vec = append(b.vec, b.buf[start:])
	}
	b.wv = b.vec
	err := s.writeConn(&b.wv)
	if err == nil {
		s.stats.framesSent.Add(uint64(b.count()))
		s.stats.bytesSent.Add(uint64(b.bytes))
	}
	return err
}

// completeBatch reports the batch's outcome to each waiting sender and
// recycles the rest. After a failure the send loop calls it only once the
// session is shut down, so that a waiter sees the session's cause.
func (s *Session) completeBatch(b *sendBatch, err error) {
	for _, frames := range [2][]*outFrame{b.ctrl, b.data} {
		for i, f := range frames {
			s.finishFrame(f, err)
			frames[i] = nil
		}
	}
	b.ctrl, b.data = b.ctrl[:0], b.data[:0]
	b.bytes = 0
}

// writeConn writes segments under a write deadline ConnectionWriteTimeout
// ahead (when the connection has deadlines). A deadline hit after some
// progress is retried: the session only ends, with
// ErrConnectionWriteTimeout, when a whole timeout passes without a byte
// written. Moving a deadline costs a timer update, so it is moved only when
// less than 7/8 of the timeout is left, not for every batch.
func (s *Session) writeConn(vec *net.Buffers) error {
	dl, hasDeadline := s.conn.(interface{ SetWriteDeadline(time.Time) error })
	timeout := s.cfg.ConnectionWriteTimeout
	for {
		if hasDeadline {
			now := time.Now()
			if s.writeDeadline.Sub(now) < timeout-timeout/8 {
				s.writeDeadline = now.Add(timeout)
				dl.SetWriteDeadline(s.writeDeadline)
			}
		}
		n, err := writeAll(s.conn, vec, s.vectored)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if n == 0 {
			return ErrConnectionWriteTimeout
		}
		s.writeDeadline = time.Time{} // progress: a full timeout again
	}
}

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
		s.gather(b)
		if b.count() == 0 {
			break
		}
		err := s.writeBatch(b)
		s.completeBatch(b, err)
		if err != nil {
			s.failQueued(err)
			return
		}
	}
	if code != nil {
		b.addCtrl(s.frames.get(encodeHeader(typeGoAway, 0, 0, uint32(*code)), nil, false))
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
	for {
		select {
		case f := <-s.ctrlCh:
			s.finishFrame(f, err)
		case f := <-s.dataCh:
			s.finishFrame(f, err)
		default:
			return
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
