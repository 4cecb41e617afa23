package yamux

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// outFrame is one frame queued for the send loop. Data frames point at the
// caller's buffer (no copy): the caller waits on done before it may reuse
// the buffer or the frame.
type outFrame struct {
	hdr  header
	body []byte

	// wait is set when a goroutine waits on done. The send loop then hands
	// the frame back through done and never touches it again; otherwise the
	// send loop returns it to framePool itself.
	wait bool
	done chan error // 1-buffered, reused across uses

	// abandon is set by a waiter whose deadline passed while the send loop
	// was writing the frame; released is set by the send loop (and read
	// only by it) once it has copied the rest and answered the waiter.
	abandon  atomic.Bool
	released bool
	copied   atomic.Bool // set by the send loop once the batch holds a copy of body
}

// framePool recycles a session's frames. It is per session, not global:
// a frame's done channel belongs to the synctest bubble (if any) of the
// goroutine that made it, and a session never leaves its bubble.
type framePool struct{ p sync.Pool }

func (fp *framePool) get(hdr header, body []byte, wait bool) *outFrame {
	f, _ := fp.p.Get().(*outFrame)
	if f == nil {
		f = &outFrame{done: make(chan error, 1)}
	}
	f.hdr, f.body, f.wait = hdr, body, wait
	f.abandon.Store(false)
	f.copied.Store(false)
	f.released = false
	return f
}

func (fp *framePool) put(f *outFrame) {
	f.body = nil
	fp.p.Put(f)
}

// readHeader reads exactly one header from r.
func readHeader(r io.Reader, h *header) error {
	_, err := io.ReadFull(r, h[:])
	return err
}

// writeAll writes the segments in bufs to w, consuming what it wrote, and
// returns the number of bytes written. On a *net.TCPConn (anything that
// implements writev) it uses net.Buffers for a vectored write; elsewhere it
// writes segment by segment and loops on short writes, which a plain
// io.Writer may legally return only with an error but some wrappers return
// without one. A single segment (a batch of control frames and small
// payloads, all copied into the batch buffer) goes out with Write even
// where writev exists: write(2) costs less than writev(2) of one iovec
// and skips net.Buffers' bookkeeping (ping-pong +3%, bench/README.md).
func writeAll(w io.Writer, bufs *net.Buffers, vectored bool) (int64, error) {
	if vectored && len(*bufs) > 1 {
		return bufs.WriteTo(w)
	}
	var total int64
	for len(*bufs) > 0 {
		b := (*bufs)[0]
		for len(b) > 0 {
			n, err := w.Write(b)
			total += int64(n)
			b = b[n:]
			(*bufs)[0] = b
			if err != nil {
				return total, err
			}
			if n == 0 {
				return total, io.ErrShortWrite
			}
		}
		*bufs = (*bufs)[1:]
	}
	return total, nil
}
