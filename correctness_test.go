package yamux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// These tests pin the fixes of the correctness review (issue 9). Each one
// failed before its fix.

// closeWhilePeerWrites is what an HTTP server does when it answers during an
// upload: both ends write hard on many streams, each end reads 1 MiB of a
// stream and then closes it while the peer keeps writing. Data arriving
// after our Close resets the stream, and the receive loop must schedule
// that RST without waiting for a send path that is full. It runs until
// each session has finished streams streams of its own, and fails if
// either session ends.
func closeWhilePeerWrites(t *testing.T, client, server *Session, streams, concurrency int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	serve := func(st *Stream) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			for {
				if _, err := st.Write(buf); err != nil {
					return
				}
			}
		}()
		io.CopyN(io.Discard, st, 1<<20)
		st.Close()
	}
	var done [2]atomic.Int64
	for i, s := range []*Session{client, server} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				st, err := s.AcceptStream(ctx)
				if err != nil {
					return
				}
				wg.Add(1)
				go func() { defer wg.Done(); serve(st) }()
			}
		}()
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, concurrency)
			for n := 0; n < streams; n++ {
				sem <- struct{}{}
				st, err := s.OpenStream(ctx)
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					serve(st)
					done[i].Add(1)
					<-sem
				}()
			}
			for range concurrency {
				sem <- struct{}{}
			}
		}()
	}
	stalled := time.Now().Add(time.Minute) // far beyond what the work needs
	for done[0].Load() < int64(streams) || done[1].Load() < int64(streams) {
		if time.Now().After(stalled) {
			t.Fatalf("stalled after %d and %d streams", done[0].Load(), done[1].Load())
		}
		if client.IsClosed() || server.IsClosed() {
			t.Fatalf("after %d and %d streams: client: %v; server: %v", done[0].Load(), done[1].Load(), client.Err(), server.Err())
		}
		select {
		case <-client.Done():
		case <-server.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	client.Close()
	server.Close()
	wg.Wait()
}

// TestCloseWhilePeerWritesOverTCP is the report's reproduction over loopback
// TCP, bounded in streams instead of time: before the fix both sessions
// stalled within a few streams and ended with ErrConnectionWriteTimeout.
func TestCloseWhilePeerWritesOverTCP(t *testing.T) {
	client, server := sessionPair(t, transports[1], nil, nil)
	closeWhilePeerWrites(t, client, server, 300, 64)
}

// TestRecvLoopNeverWaitsOnSendPath: the peer's receive path is blocked (it
// reads nothing) and ours is busy answering: window credit after CloseRead,
// RSTs for data after Close, refusals and ping answers are all scheduled
// while the send loop cannot write. The receive loop must keep reading:
// the peer's writes must all be consumed.
func TestRecvLoopNeverWaitsOnSendPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		cfg.MaxIncomingStreams = 4
		p := newRawPeer(t, rawPeerOptions{cfg: cfg, noRead: true})
		var wrote atomic.Int64
		go func() {
			for id := uint32(1); id < 4000; id += 2 {
				// SYN with data; refused beyond 4, and a ping each.
				frame := append(rawDataFrame(rawSYN, id, []byte("data")), rawCtrl(rawPing, rawSYN, 0, id)...)
				if p.write(frame) != nil {
					return
				}
				wrote.Add(1)
			}
		}()
		synctest.Wait() // everything the peer wrote was read: the receive loop is parked on the connection
		if got := wrote.Load(); got != 2000 {
			t.Fatalf("the peer could write %d of 2000 frames; the receive loop stopped reading", got)
		}
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
		s := p.sess.Stats()
		if s.StreamsRefused+s.RefusalsUnsent < 2000-4 || s.PingsDropped == 0 {
			t.Fatalf("stats %+v: want refusals and dropped pings counted", s)
		}
	})
}

// TestShutdownHonoursContextOnStuckConnection: the peer stopped reading and
// the send path is full; Shutdown with a 300 ms context returns ctx.Err()
// when the context ends, not when the connection gives up.
func TestShutdownHonoursContextOnStuckConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe() // c2 is never read: the first write blocks
		defer c2.Close()
		s, err := Client(c1, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go st.Write(make([]byte, 64<<10))
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = s.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v; want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Fatalf("Shutdown returned after %v; want 300ms", d)
		}
	})
}

// TestServerShutdownHonoursContextOnStuckClient: SessionServer.Shutdown
// against a client that stopped reading returns ctx.Err() when its context
// ends, not nil after the connection gave up.
func TestServerShutdownHonoursContextOnStuckClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		srv := &SessionServer{Handler: StreamHandlerFunc(func(st *Stream) {
			st.Write(make([]byte, 64<<10)) // blocks: the client reads nothing
		})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		far, err := ln.Dial(context.Background(), "") // the client, which never reads
		if err != nil {
			t.Fatal(err)
		}
		defer far.Close()
		// The client opens one stream.
		far.Write(rawCtrl(rawWindowUpdate, rawSYN, 1, 0))
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = srv.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v; want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Fatalf("Shutdown returned after %v; want 300ms", d)
		}
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v; want ErrServerClosed", err)
		}
	})
}

// TestConnectionWriteTimeoutTakenOnce: a peer that reads a byte now and then
// lets the connection accept a trickle; that must not stretch
// ConnectionWriteTimeout. The session ends with ErrConnectionWriteTimeout
// between one and 1.25 timeouts after the connection stalled.
func TestConnectionWriteTimeoutTakenOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c2.Close()
		cfg := DefaultConfig()
		cfg.EnableKeepAlive = false
		cfg.ConnectionWriteTimeout = 2 * time.Second
		s, err := Client(c1, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		trickled := make(chan struct{})
		go func() { // the trickle: one byte every 100 ms
			defer close(trickled)
			b := make([]byte, 1)
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := c2.Read(b); err != nil {
					return
				}
			}
		}()
		defer func() { c2.Close(); <-trickled }()
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		go st.Write(make([]byte, 256<<10))
		<-s.Done()
		d := time.Since(start)
		if err := s.Err(); !errors.Is(err, ErrConnectionWriteTimeout) {
			t.Fatalf("session ended with %v; want ErrConnectionWriteTimeout", err)
		}
		if d < cfg.ConnectionWriteTimeout || d > cfg.ConnectionWriteTimeout*5/4 {
			t.Fatalf("session ended after %v; want between %v and %v", d, cfg.ConnectionWriteTimeout, cfg.ConnectionWriteTimeout*5/4)
		}
	})
}

// TestLocalResetAfterPeerFINFailsReads: the peer wrote 30 bytes and its
// FIN; our Reset then throws the stream away, and Read must say so instead
// of reporting a clean, empty end.
func TestLocalResetAfterPeerFINFailsReads(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		p := newRawPeer(t, rawPeerOptions{tcp: tcp})
		id := p.newID()
		p.send(rawDataFrame(rawSYN|rawFIN, id, make([]byte, 30)))
		st := p.accept(id)
		p.expect(rawWindowUpdate, rawACK, id, 0)
		st.Reset()
		p.expect(rawWindowUpdate, rawRST, id, 0)
		b, err := io.ReadAll(st)
		if !errors.Is(err, ErrStreamReset) || len(b) != 0 {
			t.Fatalf("ReadAll after Reset = %q, %v; want nothing and ErrStreamReset", b, err)
		}
	})
}

// TestPeerResetAfterFINKeepsData: the other path of the same rule (spec.md
// §3.4): what the peer completed with its FIN survives its RST.
func TestPeerResetAfterFINKeepsData(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		p := newRawPeer(t, rawPeerOptions{tcp: tcp})
		id := p.newID()
		p.send(rawDataFrame(rawSYN|rawFIN, id, []byte("complete")))
		st := p.accept(id)
		p.expect(rawWindowUpdate, rawACK, id, 0)
		p.send(rawCtrl(rawWindowUpdate, rawRST, id, 0))
		p.sync()
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "complete" {
			t.Fatalf("ReadAll = %q, %v; want \"complete\", nil", b, err)
		}
		if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Write after the peer's RST = %v; want ErrStreamReset", err)
		}
	})
}

// TestOpenTimeoutIsAReset: a stream that hits StreamOpenTimeout was reset:
// its error matches both ErrStreamOpenTimeout and ErrStreamReset, and Close
// returns nil as documented.
func TestOpenTimeoutIsAReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		cfg.StreamOpenTimeout = time.Second
		p := newRawPeer(t, rawPeerOptions{cfg: cfg, sessionIsClient: true})
		st, err := p.sess.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.expect(rawWindowUpdate, rawSYN, st.StreamID(), 0)
		time.Sleep(time.Second)
		p.expect(rawWindowUpdate, rawRST, st.StreamID(), 0)
		_, rerr := st.Read(make([]byte, 1))
		_, werr := st.Write([]byte("x"))
		for what, err := range map[string]error{"Read": rerr, "Write": werr} {
			if !errors.Is(err, ErrStreamOpenTimeout) || !errors.Is(err, ErrStreamReset) {
				t.Errorf("%s = %v; want ErrStreamOpenTimeout that is also ErrStreamReset", what, err)
			}
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close = %v; want nil", err)
		}
	})
}

// TestOpenTimeoutDropsQueuedData: the RST of a stream whose ACK never
// came goes ahead of its queued data, and that data is dropped, not sent
// behind the RST: a Write waiting for it returns ErrStreamOpenTimeout at
// the timeout, reporting nothing written, even while the connection is
// stuck (before, it waited for the connection to drain, and then counted
// as written bytes the peer drops).
func TestOpenTimeoutDropsQueuedData(t *testing.T) {
	for _, closeMeanwhile := range []bool{false, true} {
		t.Run(fmt.Sprint("close=", closeMeanwhile), func(t *testing.T) {
			testOpenTimeoutDropsQueuedData(t, closeMeanwhile)
		})
	}
}

// testOpenTimeoutDropsQueuedData: with closeMeanwhile, the stream is
// closed while the Write waits (its FIN queued behind the data); the Write
// must still report the open timeout, not ErrStreamClosed.
func testOpenTimeoutDropsQueuedData(t *testing.T, closeMeanwhile bool) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		cfg.StreamOpenTimeout = time.Second
		cfg.ConnectionWriteTimeout = time.Minute
		p := newRawPeer(t, rawPeerOptions{cfg: cfg, sessionIsClient: true})
		p.holdReads()
		st, err := p.sess.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the send loop is stuck writing the SYN
		start := time.Now()
		done := writeAsync(st, make([]byte, 100<<10))
		synctest.Wait() // the Write waits for its frames
		if closeMeanwhile {
			st.Close()
		}
		r := <-done
		if !errors.Is(r.err, ErrStreamOpenTimeout) || !errors.Is(r.err, ErrStreamReset) || r.n != 0 {
			t.Fatalf("Write = %d, %v; want 0, ErrStreamOpenTimeout", r.n, r.err)
		}
		if d := time.Since(start); d > cfg.StreamOpenTimeout {
			t.Fatalf("Write returned after %v; want it at the open timeout (%v)", d, cfg.StreamOpenTimeout)
		}
		if got := st.Stats().BytesSent; got != 0 {
			t.Fatalf("BytesSent = %d after the data was dropped; want 0", got)
		}
		p.releaseReads()
		p.expect(rawWindowUpdate, rawSYN, st.StreamID(), 0)
		p.expect(rawWindowUpdate, rawRST, st.StreamID(), 0)
		p.sess.Close()
		p.expectGoAway(uint32(GoAwayNormal)) // and no Data frame (nor FIN) before it
	})
}

// TestCloseWriteDoesNotWaitForBlockedWrite: a Write blocked on flow control
// holds the stream's write lock; CloseWrite still returns at once, the FIN
// follows the bytes that Write had already sent, and the Write fails.
func TestCloseWriteDoesNotWaitForBlockedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{sessionIsClient: true})
		p.setCountOnly(func(f rawFrame) bool { return f.Type == rawData && f.Flags == 0 })
		st, err := p.sess.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wrote := writeAsync(st, make([]byte, 2*rawInitialWindow)) // half of it fits the window
		p.expect(rawWindowUpdate, rawSYN, st.StreamID(), 0)
		synctest.Wait() // the Write waits for window
		start := time.Now()
		if err := st.CloseWrite(); err != nil {
			t.Fatalf("CloseWrite = %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("CloseWrite waited %v", d)
		}
		r := <-wrote
		if r.n != rawInitialWindow || !errors.Is(r.err, ErrStreamClosed) {
			t.Fatalf("Write = %d, %v; want %d, ErrStreamClosed", r.n, r.err, rawInitialWindow)
		}
		p.setCountOnly(nil)
		p.expect(rawData, rawFIN, st.StreamID(), 0)
		if got := p.count(rawData, 0); got == 0 {
			t.Fatalf("no data before the FIN")
		}
	})
}

// TestWriteDeadlineOnStuckConnection: the connection does not drain; a
// Write with a deadline returns at it with a timeout, counting only bytes
// that will reach the peer, and the stream stays usable.
func TestWriteDeadlineOnStuckConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, st, c2 := pipeClientStream(t) // nothing reads c2 for now
		synctest.Wait()                  // the send loop is stuck writing the opening ping
		start := time.Now()
		st.SetWriteDeadline(start.Add(time.Second))
		n, err := st.Write(make([]byte, 100<<10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || n != 0 {
			t.Fatalf("Write = %d, %v; want 0 and a timeout", n, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Write returned after %v; want 1s", d)
		}
		if s := st.Stats(); s.SendWindow != initialStreamWindow {
			t.Fatalf("send window %d after the timeout; want all %d back", s.SendWindow, initialStreamWindow)
		}
		go io.Copy(io.Discard, c2) // the connection drains
		st.SetWriteDeadline(time.Time{})
		if n, err := st.Write([]byte("later")); n != 5 || err != nil {
			t.Fatalf("Write after the connection drained = %d, %v", n, err)
		}
	})
}

// TestWriteDeadlineWhileFrameBeingWritten: the Write's frame is already in
// the connection write that blocks. At its deadline the Write returns
// with what that frame carries (it will reach the peer whole: the send
// loop copies the rest) and a timeout for the part that never got window;
// the caller may reuse its buffer at once, and the peer still receives the
// original bytes.
func TestWriteDeadlineWhileFrameBeingWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, st, c2 := pipeClientStream(t) // nothing reads c2 for now
		// The peer reads the opening ping, the SYN and a first 1-byte
		// frame, then stops reading.
		headRead := make(chan error, 1)
		go func() {
			_, err := io.ReadFull(c2, make([]byte, 3*headerSize+1))
			headRead <- err
		}()
		if _, err := st.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if err := <-headRead; err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 300<<10)
		for i := range p {
			p[i] = byte(i % 251)
		}
		orig := append([]byte(nil), p...)
		start := time.Now()
		st.SetWriteDeadline(start.Add(time.Second))
		n, err := st.Write(p)
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Write returned after %v; want 1s", d)
		}
		const inFlight = int(initialStreamWindow) - 1 // the window left after the first byte
		if n != inFlight || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write = %d, %v; want %d and a timeout", n, err, inFlight)
		}
		clear(p) // the caller reuses its buffer
		var h header
		if _, err := io.ReadFull(c2, h[:]); err != nil {
			t.Fatal(err)
		}
		if h.typ() != typeData || int(h.length()) != inFlight {
			t.Fatalf("peer got %v; want Data of %d bytes", h, inFlight)
		}
		body := make([]byte, inFlight)
		if _, err := io.ReadFull(c2, body); err != nil {
			t.Fatal(err)
		}
		for i := range body {
			if body[i] != orig[i] {
				t.Fatalf("byte %d of the frame is %d; want %d: the send loop read the caller's reused buffer", i, body[i], orig[i])
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
	})
}

// TestCloseDeliversEverythingInOrder: a peer that is reading (and writing:
// its frames are in flight when we close) receives, after Close, the data
// written before it, our FIN and the GoAway, in that order, and then a
// clean end of the connection rather than a reset.
func TestCloseDeliversEverythingInOrder(t *testing.T) {
	p := newRawPeer(t, rawPeerOptions{tcp: true})
	st := p.openStream()
	if _, err := st.Write([]byte("before close")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The peer keeps sending while we close: unread input at close time
	// is what makes a kernel answer with a reset.
	p.send(rawDataFrame(0, st.StreamID(), make([]byte, 1024)))
	start := time.Now()
	p.sess.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v against a reading peer", d)
	}
	p.expect(rawData, 0, st.StreamID(), uint32(len("before close")))
	p.expect(rawData, rawFIN, st.StreamID(), 0)
	p.expectGoAway(uint32(GoAwayNormal))
	p.expectEOF()
	if p.readErr != nil && !errors.Is(p.readErr, io.EOF) {
		t.Fatalf("connection ended with %v; want a clean EOF", p.readErr)
	}
}

// TestCloseDoesNotWaitOnAStuckPeer: a peer that neither reads nor closes
// its end; Close returns within closeFlushLimit, with every goroutine of
// the session stopped.
func TestCloseDoesNotWaitOnAStuckPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c2.Close()
		s, err := Client(c1, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go st.Write(make([]byte, 1<<20))
		synctest.Wait()
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > closeFlushLimit {
			t.Fatalf("Close took %v; want at most %v", d, closeFlushLimit)
		}
		synctest.Wait()
		select {
		case <-s.sendDone:
		default:
			t.Fatal("send loop still running after Close")
		}
		select {
		case <-s.recvDone:
		default:
			t.Fatal("receive loop still running after Close")
		}
	})
}

// pipeClientStream starts a client session without keepalive over a pipe
// whose far end c2 nobody reads yet, and opens one stream. The session
// and c2 are closed when the test ends.
func pipeClientStream(t *testing.T) (*Session, *Stream, net.Conn) {
	t.Helper()
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c2.Close() })
	cfg := DefaultConfig()
	cfg.EnableKeepAlive = false
	s, err := Client(c1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	st, err := s.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, st, c2
}
