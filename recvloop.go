package yamux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// frameHandler processes one validated header; Data handlers also consume
// the payload from s.rd. A returned error wrapping ErrProtocol ends the
// session with GoAway(protocol error); any other error ends it silently.
type frameHandler func(s *Session, h header) error

var frameHandlers = [numFrameTypes]frameHandler{
	typeData:         (*Session).handleStreamFrame,
	typeWindowUpdate: (*Session).handleStreamFrame,
	typePing:         (*Session).handlePing,
	typeGoAway:       (*Session).handleGoAway,
}

// recvLoop is the only reader of the connection. It reads a header,
// validates it, and dispatches it by type until the connection fails or the
// peer breaks the protocol.
func (s *Session) recvLoop() {
	defer s.wg.Done()
	defer close(s.recvDone)
	defer s.rd.release()
	var h header
	for {
		err := readHeader(s.rd, &h)
		if err == nil {
			s.countFrame(h)
			if err = h.validate(s.cfg.MaxStreamWindowSize); err == nil {
				err = frameHandlers[h.typ()](s, h)
			}
		}
		if err != nil {
			s.recvFailed(err)
			return
		}
	}
}

// countFrame updates the receive counters for one frame.
func (s *Session) countFrame(h header) {
	n := uint64(headerSize)
	if h.typ() == typeData {
		n += uint64(h.length())
	}
	s.stats.framesReceived.Add(1)
	s.stats.bytesReceived.Add(n)
	s.stats.lastFrame.Store(time.Now().UnixNano())
}

// recvFailed ends the session after the receive loop stopped with err.
func (s *Session) recvFailed(err error) {
	if s.closed.Load() {
		return // we closed the connection ourselves
	}
	switch {
	case errors.Is(err, ErrProtocol):
		s.shutdown(err, GoAwayProtocolError, true) // logs it
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The peer closed the connection. After its GoAway that is the
		// end it announced; without one, it is reported as unexpected.
		// Either way a stream still open gets an error, never io.EOF.
		s.mu.Lock()
		ga := s.remoteGoAway
		s.mu.Unlock()
		if ga != nil {
			s.shutdown(ga, 0, false)
			return
		}
		s.shutdown(fmt.Errorf("yamux: connection closed by peer: %w", io.ErrUnexpectedEOF), 0, false)
	case errors.Is(err, net.ErrClosed):
		s.shutdown(fmt.Errorf("yamux: connection closed: %w", err), 0, false)
	default:
		s.shutdown(fmt.Errorf("yamux: connection read: %w", err), 0, false)
	}
}

// handleStreamFrame processes Data and WindowUpdate frames.
func (s *Session) handleStreamFrame(h header) error {
	id, fl := h.streamID(), h.flags()
	var st *Stream
	if fl&flagSYN != 0 {
		var err error
		if st, err = s.incomingStream(id); err != nil {
			return err
		}
	} else {
		s.mu.Lock()
		st = s.streams[id]
		s.mu.Unlock()
	}
	if st == nil {
		// A stream we do not track: already forgotten (its frames were
		// in flight when we reset or finished it), refused, never
		// opened, or stream 0. Nothing of ours depends on it, so its
		// frames are dropped and counted, never answered (an RST could
		// ping-pong) and never fatal: one stray frame must not tear down
		// hundreds of live streams (spec.md §8).
		if fl&flagSYN == 0 { // a refused SYN is counted as refused
			s.stats.framesIgnored.Add(1)
		}
		if h.typ() == typeData {
			return s.discard(h.length())
		}
		return nil
	}
	if h.typ() == typeWindowUpdate {
		if fl&flagRST != 0 {
			// The length of an RST is an error code (ResetWithCode,
			// libp2p/go-yamux's ResetWithError), no window credit.
			return st.resetByPeer(h.length(), fl)
		}
		return st.addSendWindow(h.length(), fl)
	}
	return s.readData(st, h.length(), fl)
}

// readData reads a Data payload into pooled blocks and delivers it. The
// window is checked before anything is read, and no lock is held while
// reading.
func (s *Session) readData(st *Stream, n uint32, fl flags) error {
	drop, err := st.admitData(n)
	if err != nil {
		return err
	}
	if drop {
		if err := s.discard(n); err != nil {
			return err
		}
		st.deliver(nil, nil, n, fl)
		return nil
	}
	if n <= smallPayload {
		// Seen in place when the read buffer holds it whole; otherwise
		// read into a pooled block lent for the copy.
		small := s.rd.peek(int(n))
		var b *[]byte
		if small == nil {
			b = getBlock(int(n))
			small = (*b)[:n]
			if _, err := io.ReadFull(s.rd, small); err != nil {
				putBlock(b)
				return err
			}
		}
		st.deliver(nil, small, n, fl)
		if b != nil {
			putBlock(b)
		} else {
			s.rd.Discard(int(n))
		}
		return nil
	}
	chunks := s.scratch[:0]
	for left := int(n); left > 0; {
		m := min(left, maxBlock)
		b := getBlock(m)
		if _, err := io.ReadFull(s.rd, (*b)[:m]); err != nil {
			putBlock(b)
			freeChunks(chunks)
			return err
		}
		chunks = append(chunks, chunk{buf: b, data: (*b)[:m]})
		left -= m
	}
	st.deliver(chunks, nil, n, fl)
	clear(chunks)
	s.scratch = chunks[:0]
	return nil
}

// smallPayload: Data payloads up to this size are copied into the stream's
// last block, instead of taking a pooled block each.
const smallPayload = 1 << 10

func (s *Session) discard(n uint32) error {
	_, err := s.rd.Discard(int(n))
	return err
}

// incomingStream registers a stream the peer opened with SYN. It returns
// (nil, nil) when the stream is refused with RST (backlog full, GoAway sent,
// session closing); the payload is then discarded by the caller.
func (s *Session) incomingStream(id uint32) (*Stream, error) {
	s.mu.Lock()
	if (id%2 == 1) == s.client {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: SYN for stream %d has our parity", ErrProtocol, id)
	}
	switch {
	case s.streams[id] != nil:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: SYN reuses live stream %d", ErrProtocol, id)
	case id > s.lastRemoteID:
		s.lastRemoteID = id
	default:
		// Below the highest ID seen and not live: a SYN that overtook a
		// lower one (hashicorp/yamux allocates IDs and sends SYNs without
		// one order) or, from a broken peer, a reused ID. Telling them
		// apart would take memory per closed stream, so it is accepted as
		// new (spec.md §3.2).
	}
	refuse := "" // why the stream is refused with RST
	switch {
	case s.err != nil:
		refuse = "session closing"
	case s.localGoAway:
		refuse = "GoAway sent"
	case s.incoming >= s.cfg.MaxIncomingStreams:
		refuse = "MaxIncomingStreams reached"
	case len(s.accepts)-s.acceptHead >= s.cfg.MaxIncomingStreams:
		// Streams the peer reset while they waited are no longer
		// counted in incoming but still wait to be accepted.
		refuse = "accept queue full"
	case s.reserveInitial(s.cfg.InitialStreamWindowSize) != nil:
		refuse = "MaxReceiveBuffer or MemoryManager refused"
	}
	if refuse != "" {
		s.mu.Unlock()
		s.stats.streamsRefused.Add(1)
		s.logger.Debug("yamux: refusing stream", "stream", id, "why", refuse)
		if !s.sq.pushRefusal(id) {
			s.stats.refusalsUnsent.Add(1)
		}
		return nil, nil
	}
	st := newStream(s, id, false)
	s.streams[id] = st
	s.nstreams.Add(1)
	s.incoming++
	s.accepts = append(s.accepts, st)
	s.mu.Unlock()
	select {
	case s.acceptReady <- struct{}{}:
	default:
	}
	return st, nil
}
