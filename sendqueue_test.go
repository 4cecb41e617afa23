package yamux

import "testing"

// TestSendQueueStreamsTakeTurns: a stream with many large frames queued
// does not hold up another stream's frame queued after them: the send
// loop takes one frame from each stream in turn, and each stream's frames
// stay in order.
func TestSendQueueStreamsTakeTurns(t *testing.T) {
	q := new(sendQueue)
	q.init(func() {})
	s := &Session{}
	a, b := newStreamForTest(s, 1), newStreamForTest(s, 3)
	body := make([]byte, maxDataFrame)
	for range 16 { // 4 MiB: four batches' worth
		q.pushData(a, &outFrame{hdr: encodeHeader(typeData, 0, 1, maxDataFrame), body: body})
	}
	q.pushData(b, &outFrame{hdr: encodeHeader(typeData, 0, 3, 1), body: []byte("x")})
	q.pushData(b, &outFrame{hdr: encodeHeader(typeData, flagFIN, 3, 0)})
	var batch sendBatch
	if took, _ := q.take(&batch, nil); !took {
		t.Fatal("take found nothing")
	}
	var ids []uint32
	for _, f := range batch.data {
		ids = append(ids, f.hdr.streamID())
	}
	if len(ids) < 3 || ids[0] != 1 || ids[1] != 3 || ids[2] != 1 {
		t.Fatalf("first batch carries streams %v; want 1, 3, 1, ...", ids)
	}
	var bFrames []flags
	for {
		for _, f := range batch.data {
			if f.hdr.streamID() == 3 {
				bFrames = append(bFrames, f.hdr.flags())
			}
		}
		batch.data, batch.dataBytes = batch.data[:0], 0
		q.mu.Lock()
		empty := q.emptyLocked()
		q.mu.Unlock()
		if empty {
			break
		}
		q.take(&batch, nil)
	}
	if len(bFrames) != 2 || bFrames[0] != 0 || bFrames[1] != flagFIN {
		t.Fatalf("stream 3's frames went out as %v; want data, then FIN", bFrames)
	}
}

// TestSendQueueRecallTail: a Write's frames still queued are taken back
// whole; once the first was taken, none is.
func TestSendQueueRecallTail(t *testing.T) {
	q := new(sendQueue)
	q.init(func() {})
	st := newStreamForTest(&Session{}, 1)
	fs := []*outFrame{{body: []byte("a")}, {body: []byte("b")}, {body: []byte("c")}}
	for _, f := range fs {
		q.pushData(st, f)
	}
	var batch sendBatch
	batch.dataBytes = maxBatchBytes - 1 // room for one frame only
	q.take(&batch, nil)
	if len(batch.data) != 1 || batch.data[0] != fs[0] {
		t.Fatalf("took %d frames; want the first", len(batch.data))
	}
	if q.recall(st, fs[0:]) {
		t.Fatal("recalled frames of which the first was already taken")
	}
	if !q.recall(st, fs[1:]) {
		t.Fatal("could not recall frames still queued")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if st.outq.pop() != nil {
		t.Fatal("recalled frames are still queued")
	}
}

func newStreamForTest(s *Session, id uint32) *Stream {
	return &Stream{id: id, sess: s}
}
