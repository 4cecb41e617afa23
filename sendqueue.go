package yamux

import (
	"runtime"
	"sync"
)

// sendQueue is everything waiting for the send loop. Every producer adds to
// it without ever blocking, so that no goroutine, and above all not the
// receive loop, can wait on the send loop: two peers whose send paths are
// both full would otherwise wait on each other forever (each receive loop
// blocked on its own full queue, each send loop blocked writing to the
// other). What is queued is bounded by what it is about, not by a channel:
//   - control frames owed by a stream (SYN or ACK, window credit, RST) live
//     on the stream itself (ctrlDue), and the stream is listed here once;
//   - ping answers: at most maxPendingPingAcks, further pings go
//     unanswered and are counted (spec.md §5);
//   - RSTs refusing streams we do not track: at most maxPendingRefusals,
//     further refusals go unsent and are counted;
//   - our own pings and GoAways: one per call of a user waiting for it;
//   - data frames: at most maxInFlight per writing stream (writers are
//     serialised per stream), each FIN and in-order RST at most once per
//     stream.
//
// The send loop takes from it in batches. Its mutex is a leaf: nothing else
// is locked while it is held, so any goroutine may push while holding
// Stream.mu or Session.mu.
type sendQueue struct {
	mu       sync.Mutex
	ctrl     []header  // pings, GoAways and refusals, in order
	refusals int       // refusal RSTs in ctrl
	pingAcks []uint32  // opaque values of the peer's pings to answer
	streams  []*Stream // streams with control frames due, each once
	ring     []*Stream // ring[ringHead:]: streams with data frames queued (Stream.outq), each once
	ringHead int
	run      sendRun // whether a send loop runs, and when it parks or ends (sendrun.go)
}

const (
	// maxPendingPingAcks bounds the ping answers waiting to be written.
	// Enough for every keepalive and Ping a sane peer has in flight at
	// once; a flood beyond it is dropped, not buffered.
	maxPendingPingAcks = 64

	// maxPendingRefusals bounds the RSTs for refused SYNs waiting to be
	// written. A peer that opens streams faster than we can refuse them,
	// without reading, loses the RSTs beyond it: its own open timeout
	// ends those streams.
	maxPendingRefusals = 1024
)

// pushCtrl queues a control frame of the session (ping, GoAway).
func (q *sendQueue) pushCtrl(h header) {
	q.mu.Lock()
	q.ctrl = append(q.ctrl, h)
	q.unlockAndKick()
}

// pushRefusal queues the RST refusing stream id, unless maxPendingRefusals
// are already waiting. It reports whether it was queued.
func (q *sendQueue) pushRefusal(id uint32) bool {
	q.mu.Lock()
	if q.refusals >= maxPendingRefusals {
		q.mu.Unlock()
		return false
	}
	q.refusals++
	q.ctrl = append(q.ctrl, encodeHeader(typeWindowUpdate, flagRST, id, 0))
	q.unlockAndKick()
	return true
}

// pushPingAck queues the answer to a ping, unless maxPendingPingAcks are
// already waiting. It reports whether it was queued.
func (q *sendQueue) pushPingAck(opaque uint32) bool {
	q.mu.Lock()
	if len(q.pingAcks) >= maxPendingPingAcks {
		q.mu.Unlock()
		return false
	}
	q.pingAcks = append(q.pingAcks, opaque)
	q.unlockAndKick()
	return true
}

// pushStream lists st as having control frames due. The caller holds
// st.mu and has just set st.ctrl.queued (so st is listed once).
func (q *sendQueue) pushStream(st *Stream) {
	q.mu.Lock()
	q.streams = append(q.streams, st)
	q.unlockAndKick()
}

// pushData queues a Data, FIN or in-order RST frame of st behind what st
// queued before it. Callers hold st.mu, so that a stream's frames are
// queued in the order its state changed. Streams take turns (take): one
// stream's queued frames never hold up another's.
func (q *sendQueue) pushData(st *Stream, f *outFrame) {
	q.mu.Lock()
	st.outq.push(f)
	if !st.inRing {
		st.inRing = true
		q.ring = append(q.ring, st)
	}
	q.unlockAndKick()
}

// emptyLocked reports whether nothing is queued. Call with q.mu held.
func (q *sendQueue) emptyLocked() bool {
	return len(q.ctrl) == 0 && len(q.pingAcks) == 0 && len(q.streams) == 0 && q.ringHead == len(q.ring)
}

// take moves queued work into b: every control frame and listed stream,
// and data frames within the batch limits. While the queue is empty it
// parks (parkLocked); it returns took false, taking nothing, when the run
// is to end: final once done is closed and the queue is empty (the caller
// goes on to the final flush), otherwise because the loop was idle long
// enough to exit.
//
// Before it parks on an empty queue it yields the processor once, so that
// writers already runnable (those the last batch's completion woke, and
// any others) queue their next frames first and share the next batch.
// Parking at once lets the scheduler hand the processor to the one writer
// woken last (Go runs the goroutine readied last next, in the time slice
// of the one that readied it): it queues a frame and wakes the send loop,
// which writes that frame alone, wakes that writer again, and so on, the
// two passing the processor back and forth while the writers woken before
// it wait in the run queue. One stream then sent a whole window while
// others sent nothing (TestSendLoopWritersTakeTurns), batches carried
// one to three frames, and of 64 streams sending at once the p90/p10 of
// the times the send loop had taken each one's first 1 MiB was 1.4-1.7
// (1.02-1.08 with the yield; bench/README.md). The yield costs one
// scheduler pass when nothing else is runnable.
func (q *sendQueue) take(b *sendBatch, done <-chan struct{}) (took, final bool) {
	q.mu.Lock()
	yielded := false
	for q.emptyLocked() {
		select {
		case <-done:
			q.mu.Unlock()
			return false, true
		default:
		}
		if q.run.endLocked() {
			q.mu.Unlock()
			return false, false
		}
		if !yielded {
			yielded = true
			q.mu.Unlock()
			runtime.Gosched()
			q.mu.Lock()
			continue
		}
		q.parkLocked()
		q.mu.Unlock()
		b.idle()
		select {
		case <-q.run.wake:
		case <-done:
		}
		q.mu.Lock()
	}
	q.run.workingLocked()
	// Ping answers first: round trips must not wait, and an answer must
	// not follow a GoAway queued after its ping arrived.
	for _, opaque := range q.pingAcks {
		b.ctrl = append(b.ctrl, encodeHeader(typePing, flagACK, 0, opaque))
	}
	q.pingAcks = q.pingAcks[:0]
	b.ctrl = append(b.ctrl, q.ctrl...)
	clear(q.ctrl)
	q.ctrl, q.refusals = q.ctrl[:0], 0
	b.streams, q.streams = q.streams, b.streams[:0]
	// Data round robin: one frame from each stream in turn, the ring
	// remembering whose turn is next across batches.
	for q.ringHead < len(q.ring) && len(b.data) < maxBatchFrames && b.dataBytes < maxBatchBytes {
		st := q.ring[q.ringHead]
		q.ring[q.ringHead] = nil
		q.ringHead++
		f := st.outq.pop()
		if f != nil {
			b.data = append(b.data, f)
			b.dataBytes += headerSize + len(f.body)
		}
		if st.outq.empty() {
			st.inRing = false
		} else {
			q.ring = append(q.ring, st)
		}
	}
	if q.ringHead == len(q.ring) {
		q.ring, q.ringHead = q.ring[:0], 0
		if cap(q.ring) > 4*maxBatchFrames {
			q.ring = nil // a burst is over: do not keep its room
		}
	} else if q.ringHead > len(q.ring)/2 {
		n := copy(q.ring, q.ring[q.ringHead:])
		clear(q.ring[n:])
		q.ring, q.ringHead = q.ring[:n], 0
	}
	q.mu.Unlock()
	return true, false
}

// recall takes back st's not yet written data frames fs (the tail of one
// Write, in queue order) if the send loop has not taken the first of them:
// then it has taken none, since it takes a stream's frames in order. It
// reports whether they were taken back; their writer gives up on them.
func (q *sendQueue) recall(st *Stream, fs []*outFrame) bool {
	if len(fs) == 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return st.outq.remove(fs)
}

// detach lets the writer of st's queued frames fs go without taking them
// back: their bodies are copied, and the send loop recycles them once
// written (nobody waits). It is for frames that must still go out because
// a FIN or RST is queued behind them. It reports false, doing nothing, if
// the send loop has taken the first of them.
func (q *sendQueue) detach(st *Stream, fs []*outFrame) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !st.outq.holds(fs[0]) {
		return false
	}
	for _, f := range fs {
		f.body = append([]byte(nil), f.body...)
		f.wait = false
	}
	return true
}

// dropQueued removes st's data frames that the send loop has not taken,
// for a stream reset ahead of its data: they would only follow the RST to a
// peer that drops them.
func (q *sendQueue) dropQueued(st *Stream) []*outFrame {
	q.mu.Lock()
	defer q.mu.Unlock()
	var dropped []*outFrame
	for f := st.outq.pop(); f != nil; f = st.outq.pop() {
		dropped = append(dropped, f)
	}
	return dropped
}

// drain removes every queued data frame, for a connection that failed.
func (q *sendQueue) drain() []*outFrame {
	q.mu.Lock()
	defer q.mu.Unlock()
	var rest []*outFrame
	for _, st := range q.ring[q.ringHead:] {
		for f := st.outq.pop(); f != nil; f = st.outq.pop() {
			rest = append(rest, f)
		}
		st.inRing = false
	}
	q.ring, q.ringHead = nil, 0
	q.ctrl, q.pingAcks, q.streams, q.refusals = nil, nil, nil, 0
	return rest
}

// frameFIFO is one stream's queued data frames, guarded by sendQueue.mu.
// A nil entry was recalled by its writer.
type frameFIFO struct {
	frames []*outFrame
	head   int
}

func (q *frameFIFO) push(f *outFrame) { q.frames = append(q.frames, f) }

func (q *frameFIFO) empty() bool { return q.head == len(q.frames) }

// pop returns the oldest frame, or nil when none is left.
func (q *frameFIFO) pop() *outFrame {
	for q.head < len(q.frames) {
		f := q.frames[q.head]
		q.frames[q.head] = nil
		q.head++
		if f != nil {
			if q.head == len(q.frames) {
				q.frames, q.head = q.frames[:0], 0
			}
			return f
		}
	}
	q.frames, q.head = q.frames[:0], 0
	return nil
}

// holds reports whether f is still queued.
func (q *frameFIFO) holds(f *outFrame) bool {
	for _, g := range q.frames[q.head:] {
		if g == f {
			return true
		}
	}
	return false
}

// remove takes fs, which follow each other in the queue, out of it if the
// first of them is still there and nothing but fs follows it, and reports
// whether it did. A FIN or RST queued behind them (a Close or CloseWrite
// while their Write waited) pins them: a FIN without the bytes before it
// would make a cut-off transfer read as complete.
func (q *frameFIFO) remove(fs []*outFrame) bool {
	i := q.head
	for i < len(q.frames) && q.frames[i] != fs[0] {
		i++
	}
	if i == len(q.frames) {
		return false // in the batch being written, or written
	}
	if n := len(q.frames) - i; n != len(fs) || q.frames[len(q.frames)-1] != fs[len(fs)-1] {
		return false // something was queued behind them
	}
	for _, f := range fs {
		for ; i < len(q.frames); i++ {
			if q.frames[i] == f {
				q.frames[i] = nil
				break
			}
		}
	}
	return true
}

// ctrlDue is what control frames a stream owes the peer, set by whoever
// changes the stream's state and taken by the send loop (Stream.takeCtrl).
// Guarded by Stream.mu. Holding them here, not as queued frames, bounds
// them by construction: one SYN or ACK, one credit, one RST per stream.
type ctrlDue struct {
	open   flags  // flagSYN or flagACK still to send
	delta  uint32 // window delta announced with the SYN or ACK
	credit uint32 // window credit to send
	rst    bool   // RST to send ahead of queued data
	queued bool   // listed on sendQueue.streams
}
