package yamux

import (
	"sync/atomic"
	"time"
)

// sessionCounters are the session's event counters: atomics, so that the
// hot paths count without a lock. The receive loop and the send loop each
// add once per frame or per batch.
type sessionCounters struct {
	bytesSent       atomic.Uint64
	bytesReceived   atomic.Uint64
	framesSent      atomic.Uint64
	framesReceived  atomic.Uint64
	streamsOpened   atomic.Uint64
	streamsAccepted atomic.Uint64
	streamsReset    atomic.Uint64
	streamsRefused  atomic.Uint64 // SYNs answered with RST by the limits
	pingsDropped    atomic.Uint64 // pings left unanswered: the answer queue was full
	refusalsUnsent  atomic.Uint64 // refusal RSTs not sent: maxPendingRefusals were waiting
	framesIgnored   atomic.Uint64 // frames for streams we do not track, dropped
	lastFrame       atomic.Int64  // UnixNano of the last frame received
}

// SessionStats is a snapshot of a session's counters. Bytes include frame
// headers.
type SessionStats struct {
	BytesSent, BytesReceived   uint64
	FramesSent, FramesReceived uint64
	StreamsOpened              uint64 // by us, with OpenStream
	StreamsAccepted            uint64 // returned by AcceptStream
	StreamsReset               uint64 // reset by either end, or by a timeout
	StreamsRefused             uint64 // peer's SYNs refused with RST by a limit or GoAway
	PingsDropped               uint64 // peer's pings left unanswered in a flood (spec.md §5)
	RefusalsUnsent             uint64 // refusal RSTs not sent in a SYN flood (spec.md §8)
	FramesIgnored              uint64 // frames for streams not tracked (forgotten, never opened, stream 0), dropped (spec.md §8)
	ActiveStreams              int    // streams tracked now (NumStreams)
	LastRTT                    time.Duration
	LastFrameReceived          time.Time // zero before the first frame
	State                      State
}

// Stats returns a snapshot of the session's counters. It is cheap: a few
// atomic loads and one short lock for the stream count.
func (s *Session) Stats() SessionStats {
	c := &s.stats
	st := SessionStats{
		BytesSent:       c.bytesSent.Load(),
		BytesReceived:   c.bytesReceived.Load(),
		FramesSent:      c.framesSent.Load(),
		FramesReceived:  c.framesReceived.Load(),
		StreamsOpened:   c.streamsOpened.Load(),
		StreamsAccepted: c.streamsAccepted.Load(),
		StreamsReset:    c.streamsReset.Load(),
		StreamsRefused:  c.streamsRefused.Load(),
		PingsDropped:    c.pingsDropped.Load(),
		RefusalsUnsent:  c.refusalsUnsent.Load(),
		FramesIgnored:   c.framesIgnored.Load(),
		ActiveStreams:   s.NumStreams(),
		LastRTT:         s.RTT(),
		State:           s.State(),
	}
	if ns := c.lastFrame.Load(); ns != 0 {
		st.LastFrameReceived = time.Unix(0, ns)
	}
	return st
}

// StreamStats is a snapshot of one stream's counters and windows. Bytes
// are payload bytes.
type StreamStats struct {
	BytesSent, BytesReceived   uint64
	FramesSent, FramesReceived uint64
	SendWindow                 uint32 // bytes we may still send now
	ReceiveWindow              uint32 // bytes the peer may still send now
	WindowSize                 uint32 // the receive window we aim for (auto-tuned)
	MaxWindowSize              uint32 // Config.MaxStreamWindowSize (growth may stop earlier: the budget share, spec.md §4)
}

// Stats returns a snapshot of the stream's counters and windows.
func (st *Stream) Stats() StreamStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	return StreamStats{
		BytesSent:      st.bytesSent,
		BytesReceived:  st.bytesReceived,
		FramesSent:     st.framesSent,
		FramesReceived: st.framesReceived,
		SendWindow:     st.out.avail,
		ReceiveWindow:  st.in.avail,
		WindowSize:     st.in.size,
		MaxWindowSize:  st.sess.cfg.MaxStreamWindowSize,
	}
}

// messageCounters are a Router's message counters (spec.md §10).
type messageCounters struct {
	delivered atomic.Uint64
	tooLarge  atomic.Uint64
	malformed atomic.Uint64
	abandoned atomic.Uint64
}

// RouterStats is a snapshot of a [Router]'s message counters, over every
// session it served.
type RouterStats struct {
	MessagesDelivered uint64 // handed to a handler
	MessagesTooLarge  uint64 // refused with RST from their length, over MaxMessageSize; never buffered
	MessagesMalformed uint64 // refused with RST: unknown header flags, or not exactly their length before FIN
	MessagesAbandoned uint64 // dropped unanswered: the sender reset or went silent (PrefaceTimeout, MessageTimeout), or the session ended
	MessagesActive    int    // holding a slot now: being read or handled (at most MaxConcurrentMessages)
}

// Stats returns a snapshot of the Router's message counters. It does not
// block and is safe for concurrent use. Like the first message, it fixes
// MaxConcurrentMessages.
func (r *Router) Stats() RouterStats {
	c := &r.msgStats
	return RouterStats{
		MessagesDelivered: c.delivered.Load(),
		MessagesTooLarge:  c.tooLarge.Load(),
		MessagesMalformed: c.malformed.Load(),
		MessagesAbandoned: c.abandoned.Load(),
		MessagesActive:    len(r.messageSlots()),
	}
}
