package yamux

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
)

// stallingWriter takes at most room bytes in all, then fails every Write
// with a deadline error, as a connection does whose write the send loop
// interrupted (waitBy) or whose quarter deadline passed (writeConn).
type stallingWriter struct {
	got  bytes.Buffer
	room int
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.room)
	w.got.Write(p[:n])
	w.room -= n
	if n < len(p) {
		return n, os.ErrDeadlineExceeded
	}
	return n, nil
}

// TestWriteAllResumesWhereItStopped: a write that fails part way leaves
// in bufs exactly what is left to write, whether the batch is one segment
// (written with Write) or several (net.Buffers), vectored or not; the send
// loop's retry after an interrupt (releaseAbandoned, which counts the
// segments fully written from what is left) then writes the rest once.
func TestWriteAllResumesWhereItStopped(t *testing.T) {
	seg := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for _, c := range []struct {
		name     string
		segs     [][]byte
		vectored bool
		room     int // what the writer takes before it stalls
		leftSegs int // segments left after the stall
	}{
		{"one segment, vectored, stalls inside it", [][]byte{seg(1000, 'a')}, true, 300, 1},
		{"one segment, vectored, stalls at once", [][]byte{seg(1000, 'a')}, true, 0, 1},
		{"one segment, not vectored", [][]byte{seg(1000, 'a')}, false, 300, 1},
		{"three segments, vectored, stalls in the second", [][]byte{seg(100, 'a'), seg(200, 'b'), seg(300, 'c')}, true, 150, 2},
		{"three segments, not vectored, stalls in the third", [][]byte{seg(100, 'a'), seg(200, 'b'), seg(300, 'c')}, false, 350, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := bytes.Join(c.segs, nil)
			bufs := net.Buffers(append([][]byte(nil), c.segs...))
			w := &stallingWriter{room: c.room}
			n, err := writeAll(w, &bufs, c.vectored)
			if !errors.Is(err, os.ErrDeadlineExceeded) || n != int64(c.room) {
				t.Fatalf("first writeAll = %d, %v; want %d and the deadline", n, err, c.room)
			}
			if len(bufs) != c.leftSegs {
				t.Fatalf("%d segments left; want %d", len(bufs), c.leftSegs)
			}
			if left := bytes.Join(bufs, nil); !bytes.Equal(left, want[c.room:]) {
				t.Fatalf("left to write: %d bytes, not the %d after the stall", len(left), len(want)-c.room)
			}
			w.room = len(want)
			n, err = writeAll(w, &bufs, c.vectored)
			if err != nil || n != int64(len(want)-c.room) || len(bufs) != 0 {
				t.Fatalf("second writeAll = %d, %v with %d segments left; want %d, nil, 0", n, err, len(bufs), len(want)-c.room)
			}
			if !bytes.Equal(w.got.Bytes(), want) {
				t.Fatalf("the writer got %d bytes, not the batch's %d in order", w.got.Len(), len(want))
			}
		})
	}
}
