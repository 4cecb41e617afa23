package yamux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"
)

// This file holds rawPeer, a hand-driven yamux peer for tests: it writes
// frames built byte by byte to a real *Session and decodes what the session
// sends back, so that a test can assert the exact reaction to bad input.
//
// The wire values are written out here rather than taken from header.go, so
// that a bug in the library's own encoder or decoder cannot cancel out.
const (
	rawData         = 0
	rawWindowUpdate = 1
	rawPing         = 2
	rawGoAway       = 3

	rawSYN = 1
	rawACK = 2
	rawFIN = 4
	rawRST = 8

	rawInitialWindow = 256 << 10

	// rawTimeout bounds every wait for the session. In a synctest bubble
	// it is fake time, so a missing reaction fails at once; outside (TCP)
	// it is only an upper bound on a failure, never a measured delay.
	rawTimeout = 10 * time.Second
)

// rawFrame is one frame as it is on the wire.
type rawFrame struct {
	Version uint8
	Type    uint8
	Flags   uint16
	ID      uint32
	Length  uint32
	Body    []byte // the payload of a Data frame
}

func (f rawFrame) String() string {
	names := [...]string{"Data", "WindowUpdate", "Ping", "GoAway"}
	typ := fmt.Sprintf("type%d", f.Type)
	if int(f.Type) < len(names) {
		typ = names[f.Type]
	}
	return fmt.Sprintf("{v%d %s flags=%#x id=%d len=%d}", f.Version, typ, f.Flags, f.ID, f.Length)
}

// is reports whether f has exactly this version-0 header.
func (f rawFrame) is(typ uint8, fl uint16, id, length uint32) bool {
	return f.Version == 0 && f.Type == typ && f.Flags == fl && f.ID == id && f.Length == length
}

// rawHeader encodes one header with every field explicit.
func rawHeader(version, typ uint8, fl uint16, id, length uint32) []byte {
	b := make([]byte, 12)
	b[0], b[1] = version, typ
	binary.BigEndian.PutUint16(b[2:], fl)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

// rawCtrl encodes a version-0 frame without payload.
func rawCtrl(typ uint8, fl uint16, id, length uint32) []byte {
	return rawHeader(0, typ, fl, id, length)
}

// rawDataFrame encodes a Data frame carrying body.
func rawDataFrame(fl uint16, id uint32, body []byte) []byte {
	return append(rawHeader(0, rawData, fl, id, uint32(len(body))), body...)
}

// rawPeerOptions configures newRawPeer.
type rawPeerOptions struct {
	cfg             *Config // nil: hostileConfig()
	sessionIsClient bool    // the session under test is the client; the peer opens even IDs
	tcp             bool    // loopback TCP instead of net.Pipe
	noRead          bool    // do not start the background reader (see startReader, readDirect)
	readByByte      bool    // the peer reads the connection one byte per Read
}

// hostileConfig is the default config without keepalive, so that the only
// ping the session sends by itself is the one at start.
func hostileConfig() *Config {
	cfg := DefaultConfig()
	cfg.EnableKeepAlive = false
	return cfg
}

// rawPeer is the far end of a connection whose near end is a real Session.
// Its methods that fail the test must be called from the test goroutine;
// write may be called from any goroutine.
type rawPeer struct {
	t      testing.TB
	conn   net.Conn
	gate   *readGate // every read of conn goes through it (holdReads)
	sess   *Session
	rd     *bufio.Reader // the reader goroutine's, or readDirect's before it starts
	nextID uint32        // next stream ID the peer opens

	started  bool
	frames   chan rawFrame // decoded frames, for expect
	readDone chan struct{} // closed when the reader goroutine ends
	readErr  error         // why it ended; set before readDone closes

	mu        sync.Mutex
	countOnly func(rawFrame) bool // frames it matches are counted, not queued
	counts    map[rawKey]int      // every frame read, by type and flags
	dropped   int                 // frames lost because frames was full
}

type rawKey struct {
	Type  uint8
	Flags uint16
}

// rawQueue is how many decoded frames wait for expect before more are
// dropped (and counted as dropped, which fails the next expect).
const rawQueue = 4096

// newRawPeer starts a Session over one end of a fresh connection and returns
// the peer on the other end. Everything is closed when the test ends.
func newRawPeer(t testing.TB, o rawPeerOptions) *rawPeer {
	t.Helper()
	near, far := connPair(t, o.tcp)
	cfg := o.cfg
	if cfg == nil {
		cfg = hostileConfig()
	}
	sess, err := NewSession(near, o.sessionIsClient, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gate := &readGate{conn: far}
	var rd io.Reader = gate
	if o.readByByte {
		rd = iotest.OneByteReader(gate)
	}
	p := &rawPeer{
		t:        t,
		conn:     far,
		gate:     gate,
		sess:     sess,
		rd:       bufio.NewReader(rd),
		nextID:   1,
		frames:   make(chan rawFrame, rawQueue),
		readDone: make(chan struct{}),
		counts:   make(map[rawKey]int),
	}
	if o.sessionIsClient {
		p.nextID = 2
	}
	t.Cleanup(p.close)
	if !o.noRead {
		p.startReader()
	}
	return p
}

// close tears everything down: the peer's end first, so that the session's
// Close does not wait for a peer that stopped reading.
func (p *rawPeer) close() {
	p.gate.release()
	p.conn.Close()
	p.sess.Close()
	if p.started {
		<-p.readDone
	}
}

// holdReads stops the peer reading the connection until releaseReads; a
// Read in progress is interrupted (through a read deadline in the past)
// and retried after the release. Over net.Pipe, which buffers nothing, the
// session's next write then blocks in the connection, and whatever the
// session queues meanwhile waits in its send queues: this is how a test
// sees in which order the send loop takes frames that were queued
// together. Over TCP the kernel's buffers absorb writes for a while.
func (p *rawPeer) holdReads() { p.gate.hold() }

// releaseReads lets the peer read again after holdReads.
func (p *rawPeer) releaseReads() { p.gate.release() }

// readGate reads conn, except while held.
type readGate struct {
	conn net.Conn

	mu    sync.Mutex
	held  chan struct{} // non-nil while held; closed by release
	holds int           // holds so far: tells a Read that hold interrupted from a real deadline
}

func (g *readGate) Read(b []byte) (int, error) {
	for {
		g.mu.Lock()
		held, holds := g.held, g.holds
		g.mu.Unlock()
		if held != nil {
			<-held
		}
		n, err := g.conn.Read(b)
		g.mu.Lock()
		interrupted := g.holds != holds
		g.mu.Unlock()
		if n == 0 && interrupted && errors.Is(err, os.ErrDeadlineExceeded) {
			continue // hold's deadline, cleared by release
		}
		return n, err
	}
}

func (g *readGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
		g.holds++
		g.conn.SetReadDeadline(time.Unix(1, 0)) // interrupts the Read in progress
	}
}

func (g *readGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		g.conn.SetReadDeadline(time.Time{})
		close(g.held)
		g.held = nil
	}
}

// newID returns the next stream ID of the peer's parity.
func (p *rawPeer) newID() uint32 {
	id := p.nextID
	p.nextID += 2
	return id
}

// write writes b to the session, bounded by rawTimeout. Safe from any
// goroutine.
func (p *rawPeer) write(b []byte) error {
	p.conn.SetWriteDeadline(time.Now().Add(rawTimeout))
	_, err := p.conn.Write(b)
	return err
}

// send writes each part in turn and fails the test if one cannot be written.
func (p *rawPeer) send(parts ...[]byte) {
	p.t.Helper()
	for _, b := range parts {
		if err := p.write(b); err != nil {
			p.t.Fatalf("peer write of %d bytes: %v (Session.Err: %v)", len(b), err, p.sess.Err())
		}
	}
}

// readFrame reads one frame from the connection.
func (p *rawPeer) readFrame() (rawFrame, error) {
	var h [12]byte
	if _, err := io.ReadFull(p.rd, h[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{
		Version: h[0],
		Type:    h[1],
		Flags:   binary.BigEndian.Uint16(h[2:]),
		ID:      binary.BigEndian.Uint32(h[4:]),
		Length:  binary.BigEndian.Uint32(h[8:]),
	}
	if f.Type == rawData && f.Length > 0 {
		if f.Length > 1<<20 {
			return f, fmt.Errorf("session sent a Data frame of %d bytes", f.Length)
		}
		f.Body = make([]byte, f.Length)
		if _, err := io.ReadFull(p.rd, f.Body); err != nil {
			return f, fmt.Errorf("payload of %v: %w", f, err)
		}
	}
	return f, nil
}

// readDirect reads one frame on the calling goroutine, before startReader,
// with a read deadline of rawTimeout.
func (p *rawPeer) readDirect() rawFrame {
	p.t.Helper()
	if p.started {
		p.t.Fatal("readDirect after startReader")
	}
	p.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	defer p.conn.SetReadDeadline(time.Time{})
	f, err := p.readFrame()
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	return f
}

// startReader starts the goroutine that reads and decodes everything the
// session sends, until the connection ends.
func (p *rawPeer) startReader() {
	if p.started {
		return
	}
	p.started = true
	go func() {
		defer close(p.readDone)
		for {
			f, err := p.readFrame()
			if err != nil {
				p.readErr = err
				return
			}
			p.mu.Lock()
			p.counts[rawKey{f.Type, f.Flags}]++
			queue := p.countOnly == nil || !p.countOnly(f)
			if queue {
				select {
				case p.frames <- f:
				default:
					p.dropped++
				}
			}
			p.mu.Unlock()
		}
	}()
}

// setCountOnly makes the reader count the frames match reports, without
// queueing them for expect (for floods). nil queues everything again.
func (p *rawPeer) setCountOnly(match func(rawFrame) bool) {
	p.mu.Lock()
	p.countOnly = match
	p.mu.Unlock()
}

// count returns how many frames of that type and exact flags were read.
func (p *rawPeer) count(typ uint8, fl uint16) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[rawKey{typ, fl}]
}

func (p *rawPeer) countsString() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%v (dropped %d)", p.counts, p.dropped)
}

// waitCount waits until n frames of that type and flags were read.
func (p *rawPeer) waitCount(typ uint8, fl uint16, n int) {
	p.t.Helper()
	deadline := time.Now().Add(rawTimeout)
	for p.count(typ, fl) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("got %d frames of type %d flags %#x, want %d; all: %s", p.count(typ, fl), typ, fl, n, p.countsString())
		}
		select {
		case <-p.readDone:
			if p.count(typ, fl) < n {
				p.t.Fatalf("connection ended (%v) after %d frames of type %d flags %#x, want %d", p.readErr, p.count(typ, fl), typ, fl, n)
			}
		case <-time.After(time.Millisecond):
		}
	}
	if got := p.count(typ, fl); got != n {
		p.t.Fatalf("got %d frames of type %d flags %#x, want exactly %d", got, typ, fl, n)
	}
}

// next returns the next frame the session sent, skipping the ping requests
// it makes by itself (one at start for RTT, and keepalives), or an error if
// the connection ended or nothing came within rawTimeout.
func (p *rawPeer) next() (rawFrame, error) {
	timer := time.NewTimer(rawTimeout)
	defer timer.Stop()
	for {
		var f rawFrame
		select {
		case f = <-p.frames:
		case <-p.readDone:
			select {
			case f = <-p.frames:
			default:
				return rawFrame{}, fmt.Errorf("connection ended: %w", p.readErr)
			}
		case <-timer.C:
			return rawFrame{}, fmt.Errorf("nothing within %v", rawTimeout)
		}
		if f.Type == rawPing && f.Flags == rawSYN {
			continue
		}
		return f, nil
	}
}

// expect returns the next frame and fails the test if it does not have
// exactly this header.
func (p *rawPeer) expect(typ uint8, fl uint16, id, length uint32) rawFrame {
	p.t.Helper()
	if !p.started {
		p.t.Fatal("expect before startReader")
	}
	f, err := p.next()
	want := rawFrame{Type: typ, Flags: fl, ID: id, Length: length}
	if err != nil {
		p.t.Fatalf("waiting for %v: %v (frames read: %s)", want, err, p.countsString())
	}
	if !f.is(typ, fl, id, length) {
		p.t.Fatalf("session sent %v; want %v", f, want)
	}
	return f
}

// expectAny returns the next frame, whatever it is.
func (p *rawPeer) expectAny() rawFrame {
	p.t.Helper()
	f, err := p.next()
	if err != nil {
		p.t.Fatalf("waiting for a frame: %v (frames read: %s)", err, p.countsString())
	}
	return f
}

// expectGoAway expects GoAway(code) as the next frame and then the end of
// the connection with nothing after it.
func (p *rawPeer) expectGoAway(code uint32) {
	p.t.Helper()
	p.expect(rawGoAway, 0, 0, code)
	p.expectEOF()
}

// expectEOF expects the session to close the connection with no further
// frame (other than its own ping requests).
func (p *rawPeer) expectEOF() {
	p.t.Helper()
	f, err := p.next()
	if err == nil {
		p.t.Fatalf("session sent %v; want the connection closed", f)
	}
	select {
	case <-p.readDone:
	default:
		p.t.Fatalf("connection not closed: %v", err)
	}
	if !errors.Is(p.readErr, io.EOF) && !errors.Is(p.readErr, io.ErrUnexpectedEOF) && !errors.Is(p.readErr, net.ErrClosed) {
		p.t.Logf("connection ended with %v", p.readErr) // e.g. ECONNRESET on TCP: still closed
	}
}

// openStream opens a stream from the peer with a WindowUpdate SYN, accepts
// it on the session and expects its ACK. It returns the session's Stream.
func (p *rawPeer) openStream() *Stream {
	p.t.Helper()
	id := p.newID()
	p.send(rawCtrl(rawWindowUpdate, rawSYN, id, 0))
	st := p.accept(id)
	p.expect(rawWindowUpdate, rawACK, id, 0)
	return st
}

// accept accepts the next stream on the session and checks its ID.
func (p *rawPeer) accept(id uint32) *Stream {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	st, err := p.sess.AcceptStream(ctx)
	if err != nil {
		p.t.Fatalf("AcceptStream: %v", err)
	}
	if st.StreamID() != id {
		p.t.Fatalf("accepted stream %d; want %d", st.StreamID(), id)
	}
	return st
}

// sync is a barrier: it opens a fresh stream, accepts it and waits for its
// ACK. The receive loop queues its replies in the same FIFO as that ACK, so
// the frames returned (everything the session sent before the ACK, pings
// excepted) are all it had to say about what the peer sent before. The
// accept backlog must be empty.
func (p *rawPeer) sync() []rawFrame {
	p.t.Helper()
	id := p.newID()
	p.send(rawCtrl(rawWindowUpdate, rawSYN, id, 0))
	st := p.accept(id)
	var before []rawFrame
	for {
		f, err := p.next()
		if err != nil {
			p.t.Fatalf("waiting for the ACK of barrier stream %d: %v", id, err)
		}
		if f.Type == rawWindowUpdate && f.Flags == rawACK && f.ID == id {
			break
		}
		before = append(before, f)
	}
	// Forget it without an RST, so that later expectations stay exact.
	p.send(rawCtrl(rawWindowUpdate, rawRST, id, 0))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
		p.t.Fatalf("barrier stream after RST: Read = %v; want ErrStreamReset", err)
	}
	return before
}

// readToError reads st until an error and returns what it read and the
// error.
func readToError(st *Stream) ([]byte, error) {
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := st.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// checkSessionErr fails unless err is a session-ending error: it wraps
// ErrSessionShutdown and net.ErrClosed, and each of want.
func checkSessionErr(t testing.TB, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: nil error; want one wrapping ErrSessionShutdown and %v", what, want)
	}
	for _, w := range append([]error{ErrSessionShutdown, net.ErrClosed}, want...) {
		if !errors.Is(err, w) {
			t.Fatalf("%s: error %q does not wrap %q", what, err, w)
		}
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("%s: error %q wraps io.EOF", what, err)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// totalAlloc returns the bytes allocated so far by the whole process.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// forEachRawTransport runs f over net.Pipe inside a synctest bubble (fake
// time: deterministic timeouts) and over loopback TCP (real time, where
// timeouts only bound failures).
func forEachRawTransport(t *testing.T, f func(t *testing.T, tcp bool)) {
	t.Run("pipe", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) { f(t, false) })
	})
	t.Run("tcp", func(t *testing.T) { f(t, true) })
}
