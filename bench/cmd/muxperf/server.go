package main

// This file is the server side of muxperf -listen, and the protocol it
// shares with muxperf -connect (the client, which drives the tests; see
// remote.go).
//
// Every TCP connection starts with a hello of helloSize bytes from the
// client:
//
//	[0:8]   "muxperf1"
//	[8]     kind: 'C' control, 'S' a session of the served multiplexer,
//	        'T' one raw-TCP stream (when the server serves tcp)
//	[9]     test: 'b' bulk, 's' streams, 'r' rpc, 'i' idle (S and T)
//	[10:12] zero
//	[12:16] big-endian uint32: the most streams the session has at once (S),
//	        so that the server's adapter raises its limits as the client's does
//	[16:20] big-endian uint32: read buffer size (bulk, streams; the server
//	        keeps it within 4 KiB..16 MiB)
//	[20:24] zero
//	[24:40] implementation name, NUL-padded; empty on C: any
//
// After a multiplexer's hello the connection carries that multiplexer; every
// stream of the session, and every T connection, carries one test:
//
//   - bulk, streams: the client writes records, each an 8-byte big-endian
//     length L and L bytes. The server answers each record with 8 bytes,
//     the total it has read so far. A record with L = 0 ends the stream:
//     the server answers with that total | 1<<63 and closes.
//   - rpc: the client writes a 128 B request, the server answers with
//     1 KiB and closes, and the client closes (as rawRPC in the bench
//     package).
//   - idle: nothing; the server holds the stream until the session ends.
//
// A control connection carries lines. The server answers the hello with
// "ok <impl>" or "error <why>"; then each client command gets one line:
//
//	wait <live> <held>  "ok" once the server serves exactly <live> test
//	                    sessions and T connections and holds <held> idle
//	                    streams (at most 30 s)
//	heap                "ok <live heap bytes> <goroutines>" after two GCs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d5da5f0f/yamux/bench"
)

const (
	helloMagic = "muxperf1"
	helloSize  = 40

	kindControl = 'C'
	kindSession = 'S'
	kindTCP     = 'T'

	rpcRequestSize  = 128
	rpcResponseSize = 1 << 10

	streamsChunk = 32 << 10 // write and read size of the streams test, as in the bench package
	endFlag      = 1 << 63  // in a record answer: the stream's last
	waitLimit    = 30 * time.Second
)

var testCodes = map[string]byte{testBulk: 'b', testStreams: 's', testRPC: 'r', testIdle: 'i'}

type hello struct {
	kind, test byte
	streams    uint32
	size       uint32
	impl       string
}

func (h hello) encode() []byte {
	b := make([]byte, helloSize)
	copy(b, helloMagic)
	b[8], b[9] = h.kind, h.test
	binary.BigEndian.PutUint32(b[12:], h.streams)
	binary.BigEndian.PutUint32(b[16:], h.size)
	copy(b[24:], h.impl)
	return b
}

func decodeHello(b []byte) (hello, error) {
	if string(b[:8]) != helloMagic {
		return hello{}, errors.New("not a muxperf client")
	}
	h := hello{
		kind:    b[8],
		test:    b[9],
		streams: binary.BigEndian.Uint32(b[12:]),
		size:    binary.BigEndian.Uint32(b[16:]),
		impl:    string(bytes.TrimRight(b[24:], "\x00")),
	}
	if h.streams > 1<<20 {
		return hello{}, fmt.Errorf("hello asks for %d streams", h.streams)
	}
	return h, nil
}

// server serves one implementation to muxperf clients.
type server struct {
	impl bench.Impl
	log  io.Writer // nil: quiet
	done chan struct{}
	live atomic.Int64 // test sessions and T connections being served
	held atomic.Int64 // idle streams held
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	closers map[io.Closer]struct{}
}

// serve listens on addr and serves im until ctx ends, then closes every
// connection and waits for its goroutines. It prints the address it
// listens on first.
func serve(ctx context.Context, addr string, im bench.Impl, quiet bool, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "muxperf: serving %s on %s\n", im.Name(), ln.Addr())
	s := &server{impl: im, done: make(chan struct{}), closers: map[io.Closer]struct{}{}}
	if !quiet {
		s.log = stderr
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.shutdown()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of descriptors
			continue
		}
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *server) logf(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, "muxperf: "+format+"\n", args...)
	}
}

// track registers c to be closed by shutdown; false if shut down already.
func (s *server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
}

// shutdown closes every connection and session and waits for the
// goroutines serving them.
func (s *server) shutdown() {
	s.mu.Lock()
	s.closed = true
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	close(s.done)
	for c := range cs {
		c.Close()
	}
	s.wg.Wait()
}

func (s *server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.untrack(c)
		c.Close()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, helloSize)
	if _, err := io.ReadFull(c, b); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	h, err := decodeHello(b)
	if err != nil {
		s.logf("%s: %v", c.RemoteAddr(), err)
		return
	}
	if h.kind == kindControl {
		s.control(c, h)
		return
	}
	if h.impl != s.impl.Name() {
		return // the control connection told the client already
	}
	switch {
	case h.kind == kindTCP && !s.impl.Multiplexed():
		s.live.Add(1)
		defer s.live.Add(-1)
		s.stream(h, c)
	case h.kind == kindSession && s.impl.Multiplexed():
		sess, err := s.impl.Server(c, int(h.streams))
		if err != nil {
			s.logf("%s: %v", c.RemoteAddr(), err)
			return
		}
		if !s.track(sess) {
			sess.Close()
			return
		}
		defer s.untrack(sess)
		s.live.Add(1)
		defer s.live.Add(-1)
		s.session(sess, h)
	}
}

// session serves the streams of one test session until it ends.
func (s *server) session(sess *bench.Session, h hello) {
	if h.test == testCodes[testIdle] {
		var held []net.Conn
		for {
			st, err := sess.Accept()
			if err != nil {
				break
			}
			held = append(held, st)
			s.held.Add(1)
		}
		sess.Close()
		for _, st := range held {
			st.Close()
		}
		s.held.Add(-int64(len(held)))
		return
	}
	var wg sync.WaitGroup
	for {
		st, err := sess.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stream(h, st)
		}()
	}
	sess.Close() // ends every stream still served
	wg.Wait()
}

var rpcResponse = bytes.Repeat([]byte("muxperf!"), rpcResponseSize/8)

// stream serves one stream (or T connection) of test h.test and closes it.
func (s *server) stream(h hello, st net.Conn) {
	defer st.Close()
	switch h.test {
	case testCodes[testBulk], testCodes[testStreams]:
		sink(st, int(min(max(h.size, 4<<10), 16<<20)))
	case testCodes[testRPC]:
		var req [rpcRequestSize]byte
		if _, err := io.ReadFull(st, req[:]); err != nil {
			return
		}
		st.Write(rpcResponse)
	}
}

// sink reads records and answers each with the total read (see the top of
// the file).
func sink(st net.Conn, bufSize int) {
	buf := make([]byte, bufSize)
	var hdr [8]byte
	var total uint64
	for {
		if _, err := io.ReadFull(st, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint64(hdr[:])
		if n == 0 {
			binary.BigEndian.PutUint64(hdr[:], total|endFlag)
			st.Write(hdr[:])
			return
		}
		for n > 0 {
			k, err := st.Read(buf[:min(uint64(len(buf)), n)])
			n -= uint64(k)
			total += uint64(k)
			if err != nil {
				return
			}
		}
		binary.BigEndian.PutUint64(hdr[:], total)
		if _, err := st.Write(hdr[:]); err != nil {
			return
		}
	}
}

// control answers a client's control connection.
func (s *server) control(c net.Conn, h hello) {
	if h.impl != "" && h.impl != s.impl.Name() {
		fmt.Fprintf(c, "error this server serves %s, not %s\n", s.impl.Name(), h.impl)
		return
	}
	if _, err := fmt.Fprintf(c, "ok %s\n", s.impl.Name()); err != nil {
		return
	}
	s.logf("%s: client connected", c.RemoteAddr())
	defer s.logf("%s: client left", c.RemoteAddr())
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, s.command(strings.Fields(line))+"\n"); err != nil {
			return
		}
	}
}

func (s *server) command(f []string) string {
	switch {
	case len(f) == 3 && f[0] == "wait":
		live, err1 := strconv.ParseInt(f[1], 10, 64)
		held, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return "error bad wait"
		}
		t := time.NewTimer(waitLimit)
		defer t.Stop()
		for s.live.Load() != live || s.held.Load() != held {
			select {
			case <-t.C:
				return fmt.Sprintf("error after %v the server serves %d sessions and holds %d idle streams, not %d and %d",
					waitLimit, s.live.Load(), s.held.Load(), live, held)
			case <-s.done:
				return "error server shutting down"
			case <-time.After(time.Millisecond):
			}
		}
		return "ok"
	case len(f) == 1 && f[0] == "heap":
		h := bench.HeapInUse()
		return fmt.Sprintf("ok %d %d", h, runtime.NumGoroutine())
	}
	return "error unknown command " + strconv.Quote(strings.Join(f, " "))
}
