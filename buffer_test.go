package yamux

import (
	"runtime"
	"testing"
	"testing/synctest"
)

// TestTinyDataFramesBufferCompactly: 100,000 Data frames of one byte each,
// unread, cost about their payload in heap, not a pooled block (1 KiB or
// more) each: small payloads are copied into the spare room of the
// stream's last block.
func TestTinyDataFramesBufferCompactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		const n = 100_000 // 100 KB of payload, well inside the 256 KiB window
		buf := make([]byte, 0, n*(12+1))
		for range n {
			buf = append(buf, rawDataFrame(0, st.StreamID(), []byte{'x'})...)
		}
		heap0 := heapInUse()
		p.send(buf)
		p.sync() // the receive loop has buffered every frame
		grew := int64(heapInUse()) - int64(heap0)
		runtime.KeepAlive(buf)
		if s := st.Stats(); s.BytesReceived != n || s.FramesReceived != n {
			t.Fatalf("stream received %d bytes in %d frames; want %d in %d", s.BytesReceived, s.FramesReceived, n, n)
		}
		if grew > 4<<20 {
			t.Errorf("heap grew by %d bytes for %d unread 1-byte frames; want < 4 MiB", grew, n)
		}
	})
}

// TestRecvBufferReusesDrainedRoom: a reader that stays one byte behind
// never empties the buffer; its chunk slice must reuse the room of drained
// chunks instead of growing by one entry per frame for the life of the
// stream.
func TestRecvBufferReusesDrainedRoom(t *testing.T) {
	var r recvBuffer
	one := func() chunk { b := getBlock(1); return chunk{buf: b, data: (*b)[:1]} }
	r.push(one())
	p := make([]byte, 1)
	for i := range 200_000 {
		r.push(one())
		if n := r.read(p); n != 1 || r.size != 1 {
			t.Fatalf("round %d: read %d bytes, %d left; want 1 and 1", i, n, r.size)
		}
	}
	if cap(r.chunks) > 1024 {
		t.Errorf("1 unread byte after 200,000 frames holds a chunk slice of cap %d; want <= 1024", cap(r.chunks))
	}
	r.reset()
}
