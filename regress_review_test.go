package yamux

// Regressions from a review of the send ordering and receive buffering:
// an RST of ours must never overtake our own FIN or acknowledged data, a
// Close must always send its FIN, tiny frames must not cost a block each,
// the receive queue must not grow while a reader lags, and closing with
// unread data must not leave the peer's Write hanging. They use short
// real-time pauses to let the receive loop act while the connection is
// held; in a synctest bubble the held Write deadlocked the bubble.

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// gatedConn blocks Write while paused and reports when a Write is blocked.
type gatedConn struct {
	net.Conn
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	blocked chan struct{}
}

func (c *gatedConn) pause() {
	c.mu.Lock()
	c.gate = make(chan struct{})
	c.blocked = make(chan struct{}, 1)
	c.mu.Unlock()
}
func (c *gatedConn) resume() {
	c.mu.Lock()
	close(c.gate)
	c.gate = nil
	c.mu.Unlock()
}
func (c *gatedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	g, b := c.gate, c.blocked
	c.mu.Unlock()
	if g != nil {
		select {
		case b <- struct{}{}:
		default:
		}
		<-g
	}
	return c.Conn.Write(p)
}

type rf struct {
	typ  uint8
	fl   uint16
	id   uint32
	ln   uint32
	body []byte
}

func rawHdr(typ uint8, fl uint16, id, ln uint32) []byte {
	b := make([]byte, 12)
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:], fl)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], ln)
	return b
}

func rawReader(c net.Conn, out chan<- rf) {
	defer close(out)
	for {
		h := make([]byte, 12)
		if _, err := io.ReadFull(c, h); err != nil {
			return
		}
		f := rf{h[1], binary.BigEndian.Uint16(h[2:]), binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:]), nil}
		if f.typ == 0 && f.ln > 0 {
			f.body = make([]byte, f.ln)
			if _, err := io.ReadFull(c, f.body); err != nil {
				return
			}
		}
		out <- f
	}
}

func quietCfg() *Config {
	c := DefaultConfig()
	c.EnableKeepAlive = false
	return c
}

// gatedServer is a server session over a pipe whose writes the test can
// hold, with stream 1 opened by a raw peer, accepted, and its ACK read.
type gatedServer struct {
	srv    *Session
	peer   net.Conn
	gate   *gatedConn
	frames chan rf
	st     *Stream
}

func newGatedServer(t *testing.T) *gatedServer {
	t.Helper()
	c1, c2 := net.Pipe()
	g := &gatedServer{peer: c1, gate: &gatedConn{Conn: c2}, frames: make(chan rf, 1024)}
	srv, err := Server(g.gate, quietCfg())
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	go rawReader(c1, g.frames)
	t.Cleanup(func() {
		srv.Close()
		c1.Close()
		for range g.frames {
		}
	})
	c1.Write(rawHdr(1, uint16(flagSYN), 1, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g.st, err = srv.AcceptStream(ctx); err != nil {
		t.Fatal(err)
	}
	for f := range g.frames {
		if f.id == 1 && f.fl&uint16(flagACK) != 0 {
			break
		}
	}
	return g
}

// busy holds the send loop in a write (of a ping) until resume.
func (g *gatedServer) busy() {
	g.gate.pause()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		g.srv.Ping(ctx)
	}()
	<-g.gate.blocked
}

// peerSends makes the peer send one byte on stream 1 and gives the receive
// loop time to handle it.
func (g *gatedServer) peerSends() {
	g.peer.Write(append(rawHdr(0, 0, 1, 1), 'x'))
	time.Sleep(50 * time.Millisecond)
}

// closeWhenWriting starts Close and returns once the stream is marked
// closed (Close then waits for the Write in progress).
func (g *gatedServer) closeWhenWriting() <-chan error {
	cerr := make(chan error, 1)
	go func() { cerr <- g.st.Close() }()
	for {
		g.st.mu.Lock()
		c := g.st.state.closed
		g.st.mu.Unlock()
		if c {
			return cerr
		}
		time.Sleep(time.Millisecond)
	}
}

// wireOrder resumes the send loop and returns, in order, what stream 1
// carried on the wire afterwards: DATA, FIN, RST.
func (g *gatedServer) wireOrder() []string {
	g.gate.resume()
	var order []string
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case f := <-g.frames:
			switch {
			case f.id != 1:
			case f.fl&uint16(flagRST) != 0:
				order = append(order, "RST")
			case f.fl&uint16(flagFIN) != 0:
				order = append(order, "FIN")
			case f.typ == 0:
				order = append(order, "DATA")
			}
		case <-deadline:
			return order
		}
	}
}

func checkOrder(t *testing.T, got []string) {
	t.Helper()
	if want := []string{"DATA", "FIN", "RST"}; !slices.Equal(got, want) {
		t.Errorf("stream 1 on the wire: %v; want %v (our data, our FIN, then the RST: spec.md §3.3)", got, want)
	}
}

// Finding 1a: peer data after our Close made the receive loop send an RST
// on the control queue, ahead of our FIN still queued behind other data.
func TestRegressRSTOvertakesOwnFIN(t *testing.T) {
	g := newGatedServer(t)
	if _, err := g.st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	g.busy()
	if err := g.st.Close(); err != nil { // FIN queued
		t.Fatal(err)
	}
	g.peerSends()
	checkOrder(t, g.wireOrder())
}

// Finding 1b: data arriving while Close waited for a Write in progress
// reset and forgot the stream, and Close then sent no FIN at all.
func TestRegressCloseSendsNoFIN(t *testing.T) {
	g := newGatedServer(t)
	g.gate.pause()
	werr := make(chan error, 1)
	go func() { _, err := g.st.Write([]byte("world")); werr <- err }()
	<-g.gate.blocked // the Write's frame is in the send loop
	cerr := g.closeWhenWriting()
	g.peerSends()
	checkOrder(t, g.wireOrder())
	if err := <-werr; err != nil {
		t.Errorf("Write = %v", err)
	}
	if err := <-cerr; err != nil {
		t.Errorf("Close = %v", err)
	}
}

// Finding 1c: as 1b, with the Write's frame still queued: the RST went out
// before data whose Write returned nil.
func TestRegressRSTOvertakesAckedData(t *testing.T) {
	g := newGatedServer(t)
	g.busy()
	werr := make(chan error, 1)
	go func() { _, err := g.st.Write([]byte("world")); werr <- err }()
	time.Sleep(50 * time.Millisecond) // the Write's frame waits in the queue
	cerr := g.closeWhenWriting()
	g.peerSends()
	checkOrder(t, g.wireOrder())
	if err := <-werr; err != nil {
		t.Errorf("Write = %v", err)
	}
	if err := <-cerr; err != nil {
		t.Errorf("Close = %v", err)
	}
}

// Finding 2: every Data frame gets its own pooled block (>= 1 KiB), so one
// byte of window costs >= 1 KiB of heap.
func TestRegressTinyFramesAmplify(t *testing.T) {
	c1, c2 := net.Pipe()
	srv, err := Server(c2, quietCfg())
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan rf, 1024)
	go func() {
		for range frames {
		}
	}()
	go rawReader(c1, frames)
	defer func() { srv.Close(); c1.Close() }()

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const n = 100_000 // 100 KB of payload, well inside the 256 KiB window
	buf := rawHdr(1, uint16(flagSYN), 1, 0)
	for i := 0; i < n; i++ {
		buf = append(buf, rawHdr(0, 0, 1, 1)...)
		buf = append(buf, 'x')
	}
	c1.Write(buf) // 1.3 MB on the wire; never accepted, never read
	for srv.Stats().FramesReceived < n+1 {
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	grew := int64(m1.HeapInuse) - int64(m0.HeapInuse)
	t.Logf("100 KB unread payload in 1-byte frames: heap grew %d MiB", grew>>20)
	if grew > 10<<20 {
		t.Errorf("heap grew %d MiB for %d bytes of granted window", grew>>20, n)
	}
}

// Finding 3: recvBuffer never compacts while a reader lags: chunks grows
// by one entry per frame for the life of the stream.
func TestRegressRecvBufferGrowsForever(t *testing.T) {
	var r recvBuffer
	one := func() chunk { b := getBlock(1); return chunk{buf: b, data: (*b)[:1]} }
	r.push(one())
	p := make([]byte, 1)
	for i := 0; i < 200_000; i++ {
		r.push(one())
		r.read(p) // always one byte behind
	}
	t.Logf("size=%d len(chunks)=%d cap=%d", r.size, len(r.chunks), cap(r.chunks))
	if cap(r.chunks) > 1024 {
		t.Errorf("1 unread byte holds a chunk slice of cap %d (%d KiB)", cap(r.chunks), cap(r.chunks)*32>>10)
	}
}

// Finding 4: Close with unread data that filled the window sends no RST and
// no credit, so the peer's Write hangs until StreamCloseTimeout (forever if 0).
func TestRegressCloseUnreadStallsPeer(t *testing.T) {
	c1, c2 := net.Pipe()
	cli, _ := Client(c1, quietCfg())
	srv, _ := Server(c2, quietCfg())
	defer func() { cli.Close(); srv.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, _ := cli.OpenStream(ctx)
	b, err := srv.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, 1<<20)); werr <- err }()
	for a.Stats().SendWindow != 0 {
		time.Sleep(time.Millisecond)
	}
	b.Close() // unread data discarded; nothing tells the peer to stop
	select {
	case err := <-werr:
		t.Logf("peer Write returned %v", err)
	case <-time.After(2 * time.Second):
		t.Errorf("peer Write still blocked 2s after Close discarded unread data")
		a.Reset()
		<-werr
	}
}

// Finding 5: CloseWrite on a stream the peer reset returns nil.
func TestRegressCloseWriteAfterReset(t *testing.T) {
	c1, c2 := net.Pipe()
	cli, _ := Client(c1, quietCfg())
	srv, _ := Server(c2, quietCfg())
	defer func() { cli.Close(); srv.Close() }()
	a, b := streamPair(t, cli, srv)
	b.Reset()
	if _, err := a.Read(make([]byte, 1)); err != ErrStreamReset {
		t.Fatalf("Read = %v", err)
	}
	if err := a.CloseWrite(); err == nil {
		t.Errorf("CloseWrite on a reset stream = nil; doc promises ErrStreamReset")
	}
}
