package yamux

import (
	"io"
	"net"
	"sync"
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
}

var framePool = sync.Pool{New: func() any { return &outFrame{done: make(chan error, 1)} }}

func newFrame(hdr header, body []byte, wait bool) *outFrame {
	f := framePool.Get().(*outFrame)
	f.hdr, f.body, f.wait = hdr, body, wait
	return f
}

func (f *outFrame) release() {
	f.body = nil
	framePool.Put(f)
}

// readHeader reads exactly one header from r.
func readHeader(r io.Reader, h *header) error {
	_, err := io.ReadFull(r, h[:])
	return err
}

// writeAll writes every segment in bufs to w. On a *net.TCPConn (and
// anything else that implements writev) it uses net.Buffers for a single
// vectored write; elsewhere it writes segment by segment and loops on short
// writes, which a plain io.Writer may legally return only with an error but
// some wrappers return without one.
func writeAll(w io.Writer, bufs net.Buffers, vectored bool) error {
	if vectored {
		_, err := bufs.WriteTo(w)
		return err
	}
	for _, b := range bufs {
		for len(b) > 0 {
			n, err := w.Write(b)
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrShortWrite
			}
			b = b[n:]
		}
	}
	return nil
}
