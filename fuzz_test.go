package yamux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Fuzzing a live session. Both fuzzers run every input in a synctest bubble
// over net.Pipe: timers are fake, so an input cannot make a run slow by
// waiting, a goroutine left behind fails the input (the bubble must empty),
// and a hang shows up as a bubble deadlock or as the fuzzer's hung-worker
// report.
//
//	go test -run '^$' -fuzz '^FuzzSession$' -fuzztime 60s .
//	go test -run '^$' -fuzz '^FuzzFrames$' -fuzztime 60s .

// FuzzSession feeds arbitrary bytes to a session as its peer, while the
// application accepts and echoes streams. The session must never panic or
// hang; if it ends before Close, it is with a typed error (a protocol error
// or the peer's GoAway); Close must return within closeFlushLimit; and no
// goroutine may remain.
func FuzzSession(f *testing.F) {
	for _, seed := range fuzzSessionSeeds() {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	f.Fuzz(func(t *testing.T, client bool, data []byte) {
		defer watchdog(data)()
		synctest.Test(t, func(t *testing.T) {
			fuzzSession(t, client, data)
		})
	})
}

// fuzzHangLimit is how long one input may run, in real time. An input
// runs in milliseconds; one that takes this long is stuck outside what
// synctest can see (a mutex, a spin), and crashes the worker with every
// goroutine's stack, so that the fuzzer records it.
const fuzzHangLimit = 10 * time.Second

// watchdog arms the hang check for one input; call the result when done.
// It must be armed outside the bubble, so that its timer is real.
func watchdog(input []byte) (disarm func()) {
	timer := time.AfterFunc(fuzzHangLimit, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("input %x hung for %v:\n%s", input, fuzzHangLimit, buf))
	})
	return func() { timer.Stop() }
}

func fuzzSession(t *testing.T, client bool, data []byte) {
	near, far := net.Pipe()
	sess, err := NewSession(near, client, hostileConfig())
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, far)
		close(drained)
	}()
	go echoStreams(sess)

	far.SetWriteDeadline(time.Now().Add(5 * time.Second))
	far.Write(data) // fails once the session has closed the connection
	synctest.Wait()
	if err := sess.Err(); err != nil {
		var ga *GoAwayError
		if !errors.Is(err, ErrProtocol) && !errors.As(err, &ga) {
			t.Errorf("session ended on its own with %v; want a protocol error or the peer's GoAway", err)
		}
	}
	start := time.Now()
	sess.Close()
	if d := time.Since(start); d > closeFlushLimit {
		t.Errorf("Close took %v; want at most %v", d, closeFlushLimit)
	}
	checkSessionErr(t, "Session.Err after Close", sess.Err())
	far.Close()
	<-drained
}

// echoStreams accepts streams until the session ends; each is read to its
// end and answered with what was read (up to 4 KiB), then closed.
func echoStreams(sess *Session) {
	for {
		st, err := sess.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			got, _ := readToError(st)
			st.Write(got[:min(len(got), 4096)])
		}()
	}
}

// fuzzSessionSeeds are byte streams a peer could send: good ones, each
// violation of the table in hostile_test.go, and cut-off ones.
func fuzzSessionSeeds() [][]byte {
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	good := cat(
		rawDataFrame(rawSYN, 1, []byte("hello")),
		rawCtrl(rawPing, rawSYN, 0, 7),
		rawCtrl(rawWindowUpdate, rawSYN, 3, 1000),
		rawDataFrame(0, 3, []byte("world")),
		rawCtrl(rawWindowUpdate, 0, 1, 4096),
		rawDataFrame(rawFIN, 1, nil),
		rawCtrl(rawWindowUpdate, rawRST, 3, 0),
		rawCtrl(rawPing, rawACK, 0, 0),
		rawCtrl(rawGoAway, 0, 0, 0),
	)
	seeds := [][]byte{
		nil,
		good,
		good[:17],
		rawDataFrame(rawSYN|rawFIN, 1, []byte("request")),
		rawDataFrame(rawSYN|rawFIN, 2, []byte("request")),
		cat(rawCtrl(rawWindowUpdate, rawSYN, 1, 0), rawDataFrame(0, 1, make([]byte, rawInitialWindow))),
		rawCtrl(rawGoAway, 0, 0, 1),
		rawHeader(0, rawData, rawSYN, 1, 0xffffffff),
	}
	for _, v := range violations {
		seeds = append(seeds, cat(rawDataFrame(rawSYN, 1, []byte("hello")), v.bad(nil, 1)))
	}
	return seeds
}

// FuzzFrames decodes its input into a script of peer actions (open, send
// data, FIN, RST, window updates, pings, ACKs, GoAway, arbitrary headers,
// and moves of the application: open a stream, let time pass) and plays it
// against a session whose application opens, accepts, reads and writes
// streams. Besides what FuzzSession checks, the peer checks the session's
// side of the protocol (well-formed frames, nothing beyond the window we
// granted, no data after its FIN or after its GoAway, the bytes written
// arrive in order), and the application checks what it reads: the bytes
// the peer sent, in order, and io.EOF only after the peer's FIN and all its
// data.
func FuzzFrames(f *testing.F) {
	for _, seed := range fuzzFramesSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 4096 {
			return // long scripts add time, not coverage
		}
		defer watchdog(script)()
		synctest.Test(t, func(t *testing.T) {
			fuzzFrames(t, script)
		})
	})
}

// Script operations: one byte each (mod fopCount), then its operands.
const (
	fopOpen     = iota // [kind]: open a stream from the peer; kind&1: with data
	fopData            // [stream, size]: data on a known stream
	fopFin             // [stream, kind]: FIN on a WindowUpdate or a Data frame
	fopRst             // [stream, kind]: RST
	fopWindow          // [stream, hi, lo]: window update of (hi<<8|lo)*16
	fopPing            // [x]: ping request
	fopPingAck         // [x]: a ping answer nobody asked for
	fopAck             // [stream, hi]: ACK a stream the session opened, with a delta
	fopGoAway          // [code]
	fopRaw             // [12 bytes]: any header, then (for Data) up to 64 bytes
	fopUserOpen        // the application opens a stream
	fopWait            // [t]: let the session catch up; t>0: t*10s of fake time pass
	fopCount
)

// fuzzPeer is the peer side of FuzzFrames, with the bookkeeping both the
// peer's reader and the application's goroutines check against.
type fuzzPeer struct {
	t    *testing.T
	conn net.Conn
	sess *Session

	mu      sync.Mutex
	ids     []uint32          // streams the peer knows: opened by either end
	sent    map[uint32]int    // peer -> session payload bytes per stream
	fin     map[uint32]int    // stream -> sent[stream] when the peer's first FIN went
	tainted map[uint32]bool   // streams a raw frame may have touched: not checked
	granted map[uint32]uint64 // session -> peer window the peer granted per stream
	got     map[uint32]int    // session -> peer payload bytes per stream
	sessFin map[uint32]bool   // the session sent its FIN
	goAway  bool              // the session sent GoAway
	nextID  uint32
	errs    []string
}

func (p *fuzzPeer) fail(format string, args ...any) {
	p.mu.Lock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// Payload bytes are a function of stream and offset, so that a lost,
// duplicated or misplaced byte is caught.
func peerByte(id uint32, off int) byte { return byte(int(id)*131 + off*7 + off>>8) }
func userByte(id uint32, off int) byte { return byte(int(id)*17 + off*13 + 0x55) }

func fuzzFrames(t *testing.T, script []byte) {
	near, far := net.Pipe()
	cfg := hostileConfig()
	cfg.AcceptBacklog = 8
	cfg.MaxIncomingStreams = 16
	sess, err := Server(near, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &fuzzPeer{
		t: t, conn: far, sess: sess, nextID: 1,
		sent: map[uint32]int{}, fin: map[uint32]int{}, tainted: map[uint32]bool{},
		granted: map[uint32]uint64{}, got: map[uint32]int{}, sessFin: map[uint32]bool{},
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.readLoop() }()
	go func() {
		defer wg.Done()
		for {
			st, err := sess.AcceptStream(context.Background())
			if err != nil {
				p.checkErr("AcceptStream", err)
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.useStream(st) }()
		}
	}()

	p.play(script, &wg)

	synctest.Wait()
	if err := sess.Err(); err != nil {
		var ga *GoAwayError
		if !errors.Is(err, ErrProtocol) && !errors.As(err, &ga) && !errors.Is(err, ErrStreamOpenTimeout) {
			t.Errorf("session ended on its own with %v; want a protocol error or the peer's GoAway", err)
		}
	}
	start := time.Now()
	sess.Close()
	if d := time.Since(start); d > closeFlushLimit {
		t.Errorf("Close took %v; want at most %v", d, closeFlushLimit)
	}
	far.Close()
	wg.Wait()
	for _, e := range p.errs {
		t.Error(e)
	}
}

// play runs the script; it stops early when the session stops reading.
func (p *fuzzPeer) play(script []byte, wg *sync.WaitGroup) {
	pos := 0
	arg := func() byte {
		if pos >= len(script) {
			return 0
		}
		pos++
		return script[pos-1]
	}
	pick := func() (uint32, bool) {
		b := arg()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.ids) == 0 {
			return 0, false
		}
		return p.ids[int(b)%len(p.ids)], true
	}
	opens := 0
	for pos < len(script) {
		var frame []byte
		switch arg() % fopCount {
		case fopOpen:
			kind := arg()
			p.mu.Lock()
			id := p.nextID
			p.nextID += 2
			p.ids = append(p.ids, id)
			p.grantLocked(id, 0)
			p.mu.Unlock()
			if kind&1 == 0 {
				frame = rawCtrl(rawWindowUpdate, rawSYN, id, 0)
			} else {
				frame = p.dataFrame(rawSYN, id, int(kind>>1))
			}
		case fopData:
			id, ok := pick()
			size := int(arg())
			if size >= 0xf0 {
				size = (size - 0xef) * 16 << 10 // up to 256 KiB
			}
			if ok {
				frame = p.dataFrame(0, id, size)
			}
		case fopFin:
			id, ok := pick()
			kind := arg()
			if ok {
				if kind&1 == 0 {
					frame = rawCtrl(rawWindowUpdate, rawFIN, id, 0)
				} else {
					frame = p.dataFrame(rawFIN, id, int(kind>>1)%64)
				}
				p.mu.Lock()
				if _, done := p.fin[id]; !done {
					p.fin[id] = p.sent[id]
				}
				p.mu.Unlock()
			}
		case fopRst:
			id, ok := pick()
			if kind := arg(); ok {
				typ := uint8(rawWindowUpdate)
				if kind&1 == 1 {
					typ = rawData
				}
				frame = rawCtrl(typ, rawRST, id, 0)
			}
		case fopWindow:
			id, ok := pick()
			delta := (uint32(arg())<<8 | uint32(arg())) * 16
			if ok {
				p.mu.Lock()
				p.grantLocked(id, delta)
				p.mu.Unlock()
				frame = rawCtrl(rawWindowUpdate, 0, id, delta)
			}
		case fopPing:
			frame = rawCtrl(rawPing, rawSYN, 0, uint32(arg()))
		case fopPingAck:
			frame = rawCtrl(rawPing, rawACK, 0, uint32(arg()))
		case fopAck:
			id, ok := pick()
			delta := uint32(arg()) << 10
			if ok && id%2 == 0 {
				p.mu.Lock()
				p.grantLocked(id, delta)
				p.mu.Unlock()
				frame = rawCtrl(rawWindowUpdate, rawACK, id, delta)
			}
		case fopGoAway:
			frame = rawCtrl(rawGoAway, 0, 0, uint32(arg()%4))
		case fopRaw:
			h := make([]byte, 12)
			for i := range h {
				h[i] = arg()
			}
			frame = h
			typ, id, n := h[1], binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:])
			if typ == rawData {
				for i := 0; i < int(min(n, 64)); i++ {
					frame = append(frame, arg())
				}
			}
			p.mu.Lock()
			p.tainted[id] = true
			if id >= p.nextID && id%2 == 1 && id < 1<<20 {
				p.nextID = id + 2 // a SYN for it may have opened it
			}
			p.mu.Unlock()
		case fopUserOpen:
			if opens < 16 {
				opens++
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, err := p.sess.OpenStream(context.Background())
					if err != nil {
						p.checkErr("OpenStream", err)
						return
					}
					p.useStream(st)
				}()
			}
		case fopWait:
			synctest.Wait()
			if d := arg() % 16; d > 0 {
				time.Sleep(time.Duration(d) * 10 * time.Second)
			}
		}
		if frame == nil {
			continue
		}
		p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := p.conn.Write(frame); err != nil {
			return // the session closed the connection
		}
	}
}

// grantLocked records delta more bytes of window granted to the session on
// stream id, on top of the implicit initial window. Call with p.mu held.
func (p *fuzzPeer) grantLocked(id, delta uint32) {
	if _, ok := p.granted[id]; !ok {
		p.granted[id] = rawInitialWindow
	}
	p.granted[id] += uint64(delta)
}

// dataFrame builds a Data frame of n payload bytes on stream id, in
// sequence with what the peer sent on it before.
func (p *fuzzPeer) dataFrame(fl uint16, id uint32, n int) []byte {
	p.mu.Lock()
	off := p.sent[id]
	p.sent[id] += n
	p.mu.Unlock()
	body := make([]byte, n)
	for i := range body {
		body[i] = peerByte(id, off+i)
	}
	return rawDataFrame(fl, id, body)
}

// readLoop reads what the session sends and checks the session's side of
// the protocol.
func (p *fuzzPeer) readLoop() {
	rd := &rawPeer{rd: bufio.NewReader(p.conn)}
	for {
		f, err := rd.readFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				p.fail("peer read: %v", err)
			}
			return
		}
		p.mu.Lock()
		if p.goAway {
			p.errs = append(p.errs, fmt.Sprintf("session sent %v after its GoAway", f))
		}
		switch {
		case f.Version != 0 || f.Type > rawGoAway || f.Flags&^0xf != 0:
			p.errs = append(p.errs, fmt.Sprintf("session sent a malformed frame %v", f))
		case (f.Type == rawPing || f.Type == rawGoAway) != (f.ID == 0):
			p.errs = append(p.errs, fmt.Sprintf("session sent %v: wrong stream ID for the type", f))
		case f.Type == rawGoAway:
			p.goAway = true
		case f.Type == rawData || f.Type == rawWindowUpdate:
			id := f.ID
			if f.Flags&rawSYN != 0 {
				if id%2 != 0 {
					p.errs = append(p.errs, fmt.Sprintf("server session opened odd stream %d", id))
				}
				p.ids = append(p.ids, id)
			}
			p.grantLocked(id, 0)
			if f.Type == rawData && len(f.Body) > 0 {
				if p.sessFin[id] {
					p.errs = append(p.errs, fmt.Sprintf("session sent data on stream %d after its FIN", id))
				}
				if len(f.Body) > maxDataFrame {
					p.errs = append(p.errs, fmt.Sprintf("session sent a Data frame of %d bytes", len(f.Body)))
				}
				off := p.got[id]
				p.got[id] += len(f.Body)
				if !p.tainted[id] && uint64(p.got[id]) > p.granted[id] {
					p.errs = append(p.errs, fmt.Sprintf("session sent %d bytes on stream %d; the peer granted %d", p.got[id], id, p.granted[id]))
				}
				for i, b := range f.Body {
					if b != userByte(id, off+i) {
						p.errs = append(p.errs, fmt.Sprintf("stream %d: byte %d from the session is %#x; want %#x", id, off+i, b, userByte(id, off+i)))
						break
					}
				}
			}
			if f.Flags&rawFIN != 0 {
				p.sessFin[id] = true
			}
		}
		p.mu.Unlock()
	}
}

// useStream is the application: it writes a few KiB on st while it reads st
// to its end, checking every byte and the end; then it closes st.
func (p *fuzzPeer) useStream(st *Stream) {
	id := st.StreamID()
	done := make(chan struct{})
	go func() {
		defer close(done)
		data := make([]byte, int(id%5)*3000)
		for i := range data {
			data[i] = userByte(id, i)
		}
		if _, err := st.Write(data); err != nil {
			p.checkErr(fmt.Sprintf("stream %d: Write", id), err)
			return
		}
		if err := st.CloseWrite(); err != nil {
			p.checkErr(fmt.Sprintf("stream %d: CloseWrite", id), err)
		}
	}()
	off := 0
	buf := make([]byte, 8<<10)
	for {
		n, err := st.Read(buf)
		p.mu.Lock()
		tainted := p.tainted[id]
		p.mu.Unlock()
		for i := 0; i < n && !tainted; i++ {
			if buf[i] != peerByte(id, off+i) {
				p.fail("stream %d: read byte %d = %#x; want %#x", id, off+i, buf[i], peerByte(id, off+i))
				break
			}
		}
		off += n
		if err == io.EOF {
			p.mu.Lock()
			fin, ok := p.fin[id]
			p.mu.Unlock()
			if !tainted && (!ok || off != fin) {
				p.fail("stream %d: io.EOF after %d bytes; the peer's FIN came after %d (sent: %v)", id, off, fin, ok)
			}
			break
		}
		if err != nil {
			p.checkErr(fmt.Sprintf("stream %d: Read", id), err)
			break
		}
	}
	st.Close()
	<-done
}

// checkErr records an error a user call returned that is not one of the
// documented ones.
func (p *fuzzPeer) checkErr(what string, err error) {
	switch {
	case errors.Is(err, ErrSessionShutdown), errors.Is(err, ErrStreamReset),
		errors.Is(err, ErrStreamOpenTimeout), errors.Is(err, ErrStreamClosed),
		errors.Is(err, ErrRemoteGoAway), errors.Is(err, ErrReceiveBufferFull):
		if errors.Is(err, io.EOF) {
			p.fail("%s: %v wraps io.EOF", what, err)
		}
	default:
		p.fail("%s: undocumented error %v", what, err)
	}
}

// fuzzFramesSeeds are scripts that reach the interesting states: streams
// both ways with data, windows, FIN and RST, pings, GoAway and time passing.
func fuzzFramesSeeds() [][]byte {
	return [][]byte{
		{fopOpen, 1, fopData, 0, 100, fopFin, 0, 0, fopWait, 0},
		{fopOpen, 9, fopUserOpen, fopWait, 0, fopAck, 1, 4, fopData, 1, 50, fopFin, 1, 1, fopRst, 0, 0, fopWait, 1},
		{fopOpen, 0, fopData, 0, 0xff, fopData, 0, 0xff, fopWindow, 0, 1, 0, fopWait, 0},
		{fopPing, 1, fopPingAck, 2, fopGoAway, 0, fopUserOpen, fopWait, 0},
		{fopOpen, 0, fopOpen, 0, fopRst, 0, 1, fopFin, 1, 0, fopData, 0, 10, fopWait, 3},
		{fopUserOpen, fopUserOpen, fopWait, 10, fopAck, 0, 0},
		{fopRaw, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 'a', 'b', 'c', fopWait, 0},
		{fopOpen, 1, fopFin, 0, 1, fopFin, 0, 0, fopData, 0, 4},
		{fopGoAway, 1},
	}
}
