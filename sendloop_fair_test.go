package yamux

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
)

// sinkConn is a connection whose writes complete at once, without ever
// blocking or handing off to another goroutine, and whose reads block until
// Close. It logs the stream ID of every Data frame written, in order.
type sinkConn struct {
	mu     sync.Mutex
	buf    []byte   // bytes of a frame not yet complete
	ids    []uint32 // stream ID of each non-empty Data frame, in write order
	closed chan struct{}
	once   sync.Once
}

func newSinkConn() *sinkConn { return &sinkConn{closed: make(chan struct{})} }

func (c *sinkConn) Read([]byte) (int, error) {
	<-c.closed
	return 0, io.EOF
}

func (c *sinkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 12 {
		typ, id, n := c.buf[1], binary.BigEndian.Uint32(c.buf[4:]), binary.BigEndian.Uint32(c.buf[8:])
		size := 12
		if typ == rawData {
			size += int(n)
		}
		if len(c.buf) < size {
			break
		}
		if typ == rawData && n > 0 {
			c.ids = append(c.ids, id)
		}
		c.buf = c.buf[size:]
	}
	return len(p), nil
}

func (c *sinkConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *sinkConn) frameIDs() []uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint32(nil), c.ids...)
}

// TestSendLoopWritersTakeTurns: streams whose writers each keep one frame
// in flight (one Data frame per Write, waited for) share the connection
// frame by frame, even when the connection's writes never block. Without
// the send loop's yield before it parks (sendQueue.take), the writer it
// woke last runs next on its processor and hands its next frame straight
// back, and the two take turns alone while the writers woken with it
// wait: one stream then sent all its frames before the others sent their
// second. One processor makes that hand-off the scheduler's only choice.
func TestSendLoopWritersTakeTurns(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const (
		writers = 8
		frames  = 8 // of 32 KiB each: one initial window per stream
		size    = 32 << 10
	)
	synctest.Test(t, func(t *testing.T) {
		conn := newSinkConn()
		s, err := Client(conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for range writers {
			st, err := s.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				buf := make([]byte, size)
				<-start
				for range frames {
					if _, err := st.Write(buf); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ids := conn.frameIDs()
		if len(ids) != writers*frames {
			t.Fatalf("%d Data frames written; want %d", len(ids), writers*frames)
		}
		// When the first stream has sent all its frames, every other
		// stream must have sent at least half of its own (in practice
		// all but one or two: the turns are not exact, since the writer
		// woken last still runs first after the yield).
		sent := map[uint32]int{}
		for _, id := range ids {
			sent[id]++
			if sent[id] == frames {
				break
			}
		}
		for id, n := range sent {
			if n < frames/2 {
				t.Fatalf("one stream sent all %d frames while stream %d sent %d (order %v)", frames, id, n, ids)
			}
		}
		if len(sent) != writers {
			t.Fatalf("one stream sent all %d frames before %d of %d streams sent any (order %v)", frames, writers-len(sent), writers, ids)
		}
	})
}

// TestReadCreditGoesOutAtTheQuarter: the credit for the first quarter of a
// window reaches the peer while the reader is still reading the rest of its
// backlog, not once the reader has read it all and blocks. Without the
// yield in Read, the send loop that the credit woke waits for the reader
// to give up its processor (one processor makes that the scheduler's only
// choice), and the peer sees no window until the backlog is gone.
func TestReadCreditGoesOutAtTheQuarter(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const chunk = 32 << 10
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		cli, srv := sessionsOver(t, c1, c2, nil, nil)
		out, err := cli.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// A whole window: the Write returns once it is on the connection,
		// and the server holds it unread.
		if _, err := out.Write(make([]byte, initialStreamWindow)); err != nil {
			t.Fatal(err)
		}
		in, err := srv.AcceptStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if w := out.Stats().SendWindow; w != 0 {
			t.Fatalf("send window %d after a whole window was written; want 0", w)
		}
		buf := make([]byte, chunk)
		var windows []uint32 // the client's send window after each Read
		for read := 0; read < int(initialStreamWindow); {
			n, err := in.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			read += n
			windows = append(windows, out.Stats().SendWindow)
		}
		// Credit is due at a quarter window (after the second Read of
		// 32 KiB); it must be at the client before the last Read.
		if windows[len(windows)-2] == 0 {
			t.Fatalf("client's send window after each Read of the backlog: %v; want credit before the backlog was read", windows)
		}
	})
}
