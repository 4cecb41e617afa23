package yamux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// A bad network under two real sessions: connection wrappers that read one
// byte at a time, write short, fail after N bytes, close mid-transfer, or
// read far slower than the other end writes. What must hold in every case:
// streams unblock with errors, nothing deadlocks, a reader never mistakes a
// cut-off transfer for a complete one, and data a Write reported as written
// arrives whole (over net.Pipe, where "written" means "read by the peer";
// over TCP a write only reaches the kernel, and an abortive close may drop
// it, so there only the first two are checked).

// errInjected is the write error faultConn injects.
var errInjected = errors.New("faultconn: injected write failure")

// faultConn wraps a connection with faults. The zero value of each field
// means no fault of that kind.
type faultConn struct {
	net.Conn
	readMax   int           // a Read returns at most this many bytes
	readDelay time.Duration // every Read sleeps this long first (fake time in a bubble)
	writeMax  int           // a Write writes at most this many bytes and returns n < len(p), nil
	zeroWrite bool          // Write returns 0, nil
	failAfter int64         // once this many bytes were written, Write fails with errInjected

	written atomic.Int64
	writes  atomic.Int64
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.readDelay > 0 {
		time.Sleep(c.readDelay)
	}
	if c.readMax > 0 && len(p) > c.readMax {
		p = p[:c.readMax]
	}
	return c.Conn.Read(p)
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.zeroWrite {
		return 0, nil
	}
	var err error
	if c.failAfter > 0 {
		left := c.failAfter - c.written.Load()
		if left <= 0 {
			return 0, errInjected
		}
		if int64(len(p)) > left {
			p, err = p[:left], errInjected
		}
	}
	if c.writeMax > 0 {
		// Vary the size: 1..writeMax, so that every offset gets cut.
		m := 1 + int(c.writes.Add(1)*7919%int64(c.writeMax))
		if len(p) > m {
			p, err = p[:m], nil
		}
	}
	n, werr := c.Conn.Write(p)
	c.written.Add(int64(n))
	if werr != nil {
		return n, werr
	}
	return n, err
}

// pattern returns n bytes that depend on seed and position, so that a
// misplaced byte is caught.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// transfer is the outcome of one stream's one-way transfer.
type transfer struct {
	data    []byte // what the writer wrote
	n       int    // what Write reported as written
	werr    error  // Write's (or CloseWrite's) error
	got     []byte // what the reader read
	rerr    error  // the reader's final error
	writeOK bool   // Write returned nil (before CloseWrite)
}

// check verifies the invariants of a transfer over a possibly failing
// connection; strict adds "a Write that returned nil arrived whole".
func (x *transfer) check(t *testing.T, name string, strict bool) {
	t.Helper()
	if !bytes.Equal(x.got, x.data[:min(len(x.got), len(x.data))]) || len(x.got) > len(x.data) {
		t.Errorf("%s: the reader got %d bytes that are not a prefix of the %d written", name, len(x.got), len(x.data))
	}
	if x.rerr == io.EOF && len(x.got) != len(x.data) {
		t.Errorf("%s: the reader got io.EOF after %d of %d bytes: a cut transfer looked complete", name, len(x.got), len(x.data))
	}
	if x.rerr == nil {
		t.Errorf("%s: the reader ended without an error", name)
	}
	if x.n > len(x.data) || (x.werr == nil && x.n != len(x.data)) {
		t.Errorf("%s: Write reported %d of %d bytes with error %v", name, x.n, len(x.data), x.werr)
	}
	if strict && len(x.got) < x.n {
		t.Errorf("%s: Write reported %d bytes written but the reader got only %d (reader error %v)", name, x.n, len(x.got), x.rerr)
	}
}

// runTransfers opens one stream per size from a to b and writes, in both
// directions when both is set, concurrently, then CloseWrites. It returns
// the outcomes after every goroutine has finished; onRead, if not nil, is
// called with the bytes each Read returned.
func runTransfers(t *testing.T, a, b *Session, sizes []int, both bool, onRead func(int)) []*transfer {
	t.Helper()
	var xs []*transfer
	var wg sync.WaitGroup
	write := func(st *Stream, x *transfer) {
		defer wg.Done()
		x.n, x.werr = st.Write(x.data)
		x.writeOK = x.werr == nil
		if x.werr == nil {
			x.werr = st.CloseWrite()
		}
	}
	read := func(st *Stream, x *transfer) {
		defer wg.Done()
		buf := make([]byte, 16<<10)
		for {
			n, err := st.Read(buf)
			x.got = append(x.got, buf[:n]...)
			if onRead != nil {
				onRead(n)
			}
			if err != nil {
				x.rerr = err
				return
			}
		}
	}
	// Open every stream first, so that a fault during the transfers
	// cannot be mistaken for a failure to open.
	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	type pair struct{ sa, sb *Stream }
	var pairs []pair
	for i := range sizes {
		sa, err := a.OpenStream(ctx)
		if err != nil {
			t.Fatalf("OpenStream %d: %v", i, err)
		}
		sb, err := b.AcceptStream(ctx)
		if err != nil {
			t.Fatalf("AcceptStream %d: %v", i, err)
		}
		pairs = append(pairs, pair{sa, sb})
	}
	for i, size := range sizes {
		sa, sb := pairs[i].sa, pairs[i].sb
		ab := &transfer{data: pattern(2*i, size)}
		xs = append(xs, ab)
		wg.Add(2)
		go write(sa, ab)
		go read(sb, ab)
		if both {
			ba := &transfer{data: pattern(2*i+1, size)}
			xs = append(xs, ba)
			wg.Add(2)
			go write(sb, ba)
			go read(sa, ba)
		}
	}
	wg.Wait()
	return xs
}

// TestFaultOneByteReads: both ends read the connection one byte per Read.
// Everything arrives whole, window updates included.
func TestFaultOneByteReads(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		c1, c2 := connPair(t, tcp)
		client, server := sessionsOver(t, &faultConn{Conn: c1, readMax: 1}, &faultConn{Conn: c2, readMax: 1}, hostileConfig(), hostileConfig())
		// Beyond half a window, so that window updates are needed.
		xs := runTransfers(t, client, server, []int{rawInitialWindow/2 + 1000, 3000}, true, nil)
		for i, x := range xs {
			if x.werr != nil || x.rerr != io.EOF || !bytes.Equal(x.got, x.data) {
				t.Errorf("transfer %d: write %v, read %d of %d bytes, %v", i, x.werr, len(x.got), len(x.data), x.rerr)
			}
		}
	})
}

// TestFaultShortWrites: the connection's Write writes 1..7 bytes and
// returns n < len(p) with a nil error. The session writes the rest.
func TestFaultShortWrites(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		c1, c2 := connPair(t, tcp)
		client, server := sessionsOver(t, &faultConn{Conn: c1, writeMax: 7}, &faultConn{Conn: c2, writeMax: 7}, hostileConfig(), hostileConfig())
		xs := runTransfers(t, client, server, []int{100_000, 1, 5000}, true, nil)
		for i, x := range xs {
			if x.werr != nil || x.rerr != io.EOF || !bytes.Equal(x.got, x.data) {
				t.Errorf("transfer %d: write %v, read %d of %d bytes, %v", i, x.werr, len(x.got), len(x.data), x.rerr)
			}
		}
		if _, err := client.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

// TestFaultZeroWrite: a connection whose Write returns 0, nil. The session
// ends with io.ErrShortWrite rather than spinning, and the peer sees the
// connection end.
func TestFaultZeroWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		client, server := sessionsOver(t, &faultConn{Conn: c1, zeroWrite: true}, c2, hostileConfig(), hostileConfig())
		// OpenStream only queues the SYN; the write carrying it fails,
		// and the Write waiting for its frame reports why.
		st, err := client.OpenStream(context.Background())
		if err == nil {
			_, err = st.Write([]byte("x"))
		}
		<-client.Done()
		checkSessionErr(t, "OpenStream or Write", err, io.ErrShortWrite)
		checkSessionErr(t, "client Err", client.Err(), io.ErrShortWrite)
		<-server.Done()
		checkSessionErr(t, "server Err", server.Err())
	})
}

// TestFaultWriteErrorAfterN: the client's connection fails every write
// after N bytes, in the middle of a frame or not. Every Write returns; the
// client's error wraps the injected one; readers get a prefix of the data
// and an error, never a false io.EOF; over net.Pipe every byte a Write
// reported arrived.
func TestFaultWriteErrorAfterN(t *testing.T) {
	for _, n := range []int64{100, 70_001, 300_007} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			forEachRawTransport(t, func(t *testing.T, tcp bool) {
				c1, c2 := connPair(t, tcp)
				client, server := sessionsOver(t, &faultConn{Conn: c1, failAfter: n}, c2, hostileConfig(), hostileConfig())
				if n < 1000 {
					// Too early for a stream to carry anything: OpenStream
					// (which only queues the SYN) or the first Write, which
					// waits for its frame, must fail.
					ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
					defer cancel()
					var err error
					for i := 0; err == nil && i < 100; i++ {
						var st *Stream
						if st, err = client.OpenStream(ctx); err == nil {
							_, err = st.Write([]byte("x"))
						}
					}
					checkSessionErr(t, "OpenStream or Write", err, errInjected)
					return
				}
				xs := runTransfers(t, client, server, []int{200_000, 200_000, 50_000, 10}, false, nil)
				for i, x := range xs {
					x.check(t, fmt.Sprintf("stream %d", i), !tcp)
				}
				checkSessionErr(t, "client Err", client.Err(), errInjected)
				<-server.Done()
				checkSessionErr(t, "server Err", server.Err())
			})
		})
	}
}

// TestFaultConnClosedMidTransfer: the client's connection is closed under
// both sessions while streams transfer in both directions. Every call
// returns with an error, no reader sees a false io.EOF, and over net.Pipe
// every byte a Write reported arrived.
func TestFaultConnClosedMidTransfer(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		cc, sc := connPair(t, tcp)
		client, server := sessionsOver(t, cc, sc, hostileConfig(), hostileConfig())
		var received atomic.Int64
		var once sync.Once
		onRead := func(n int) {
			if received.Add(int64(n)) >= 600_000 {
				once.Do(func() { cc.Close() })
			}
		}
		xs := runTransfers(t, client, server, []int{1 << 20, 1 << 20, 300_000}, true, onRead)
		for i, x := range xs {
			x.check(t, fmt.Sprintf("transfer %d", i), !tcp)
		}
		<-client.Done()
		<-server.Done()
		checkSessionErr(t, "client Err", client.Err())
		checkSessionErr(t, "server Err", server.Err())
	})
}

// TestFaultSlowConnectionReader: the server reads the connection 4 KiB per
// 50 ms (80 KiB/s, fake time), far slower than the client writes. The
// transfer completes whole; the writer is held back, not failed.
func TestFaultSlowConnectionReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		client, server := sessionsOver(t, c1, &faultConn{Conn: c2, readMax: 4096, readDelay: 50 * time.Millisecond}, hostileConfig(), hostileConfig())
		start := time.Now()
		xs := runTransfers(t, client, server, []int{1 << 20}, false, nil)
		x := xs[0]
		if x.werr != nil || x.rerr != io.EOF || !bytes.Equal(x.got, x.data) {
			t.Fatalf("write %v, read %d of %d bytes, %v", x.werr, len(x.got), len(x.data), x.rerr)
		}
		if d := time.Since(start); d < 10*time.Second {
			t.Errorf("1 MiB at 80 KiB/s took %v of fake time; the reader was not slow", d)
		}
	})
}

// TestFaultSlowStreamReader: the application reads a stream 1 KiB per 10 ms
// while the peer writes 1 MiB. Flow control holds the writer back: the
// receiver never buffers more than the stream's window.
func TestFaultSlowStreamReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := sessionPair(t, transports[0], hostileConfig(), hostileConfig())
		a, b := streamPair(t, client, server)
		data := pattern(9, 1<<20)
		werr := make(chan error, 1)
		go func() {
			_, err := a.Write(data)
			if err == nil {
				err = a.CloseWrite()
			}
			werr <- err
		}()
		var got []byte
		buf := make([]byte, 1024)
		var maxBuffered uint64
		for {
			time.Sleep(10 * time.Millisecond)
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			s := b.Stats()
			if buffered := s.BytesReceived - uint64(len(got)); buffered > maxBuffered {
				maxBuffered = buffered
				if buffered > uint64(s.WindowSize) {
					t.Fatalf("receiver buffers %d bytes; its window is %d", buffered, s.WindowSize)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read after %d bytes: %v", len(got), err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes differing from the %d written", len(got), len(data))
		}
		if maxBuffered > rawInitialWindow {
			t.Errorf("receiver buffered up to %d bytes; the window never grows for a slow reader", maxBuffered)
		}
	})
}

// TestFaultSlowReaderManyStreams: Config.ConnectionWriteTimeout ends the
// session only when "a write makes no progress for this long". 16 streams
// writing at once fill 1 MiB batches, which a peer reading a steady 80 KiB/s
// takes 12.8 s to read: longer than the timeout, but always progressing, so
// the session must survive (a deadline per batch would kill it).
func TestFaultSlowReaderManyStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		client, server := sessionsOver(t, c1, &faultConn{Conn: c2, readMax: 4096, readDelay: 50 * time.Millisecond}, hostileConfig(), hostileConfig())
		sizes := make([]int, 16)
		for i := range sizes {
			sizes[i] = 128 << 10
		}
		for i, x := range runTransfers(t, client, server, sizes, false, nil) {
			if x.werr != nil || x.rerr != io.EOF || !bytes.Equal(x.got, x.data) {
				t.Errorf("stream %d: write %v, read %d of %d bytes, %v", i, x.werr, len(x.got), len(x.data), x.rerr)
			}
		}
		if err := client.Err(); err != nil {
			t.Fatalf("client session ended: %v", err)
		}
	})
}
