// Command soak churns thousands of streams between two yamux sessions over
// loopback TCP for a while, and checks that every byte arrives, every
// expected error is the documented one, and nothing accumulates.
//
// Each stream does one of: an echo (the server returns what it reads while
// the client is still writing), a download, a half-close exchange (the
// server answers with a SHA-256 of everything after the client's FIN), a
// reset by either end part-way, or a deadline that must fire. Sizes are
// random, skewed towards small streams, up to -max. At most -c streams run
// at once.
//
//	cd bench && go run ./cmd/soak -d 60s
//
// It prints progress every -every and, at the end, goroutines, heap and the
// stream counts. It exits 1 on any checksum mismatch, unexpected error,
// stream left open, or goroutine left behind.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d5da5f0f/yamux"
)

// Stream modes; the client sends the mode in the stream's first bytes.
const (
	modeEcho        = iota // client writes size bytes; server echoes them as they come
	modeDownload           // server writes size bytes
	modeHalfClose          // client writes size bytes and FIN; server answers with their SHA-256
	modeClientReset        // client writes arg bytes, then resets
	modeServerReset        // server resets after reading arg bytes
	modeDeadline           // nobody writes; the client's read deadline must fire
	numModes
)

var modeNames = [numModes]string{"echo", "download", "halfclose", "client-reset", "server-reset", "deadline"}

// request is the 25-byte stream preamble: mode, size, seed, arg.
type request struct {
	mode byte
	size uint64
	seed uint64
	arg  uint64
}

func (r request) encode() []byte {
	b := make([]byte, 25)
	b[0] = r.mode
	binary.BigEndian.PutUint64(b[1:], r.size)
	binary.BigEndian.PutUint64(b[9:], r.seed)
	binary.BigEndian.PutUint64(b[17:], r.arg)
	return b
}

func decodeRequest(b []byte) request {
	return request{b[0], binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:]), binary.BigEndian.Uint64(b[17:])}
}

// gen is a deterministic byte stream: both ends regenerate it from the seed
// instead of keeping a copy.
type gen struct{ x uint64 }

func newGen(seed uint64) *gen { return &gen{seed | 1} }

func (g *gen) fill(p []byte) {
	for i := range p {
		if i%8 == 0 {
			g.x ^= g.x << 13
			g.x ^= g.x >> 7
			g.x ^= g.x << 17
		}
		p[i] = byte(g.x >> (8 * (i % 8)))
	}
}

// verifier checks bytes against a gen as they arrive, and hashes them.
type verifier struct {
	g    *gen
	want []byte
	n    uint64
	sum  hashWriter
	bad  bool
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newVerifier(seed uint64) *verifier {
	return &verifier{g: newGen(seed), sum: sha256.New()}
}

// check compares p with the next bytes of the stream.
func (v *verifier) check(p []byte) {
	// The generator works in 8-byte words: regenerate in whole chunks.
	for len(p) > 0 {
		if len(v.want) == 0 {
			v.want = make([]byte, 32<<10)
			v.g.fill(v.want)
		}
		m := min(len(p), len(v.want))
		if !bytes.Equal(p[:m], v.want[:m]) {
			v.bad = true
		}
		v.sum.Write(p[:m])
		v.want = v.want[m:]
		v.n += uint64(m)
		p = p[m:]
	}
}

// writeGen writes n bytes of gen(seed) to w.
func writeGen(w io.Writer, seed, n uint64) (uint64, error) {
	g := newGen(seed)
	buf := make([]byte, 32<<10)
	var done uint64
	for done < n {
		g.fill(buf)
		m := min(uint64(len(buf)), n-done)
		k, err := w.Write(buf[:m])
		done += uint64(k)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// expectedSum returns the SHA-256 of n bytes of gen(seed).
func expectedSum(seed, n uint64) []byte {
	h := sha256.New()
	writeGen(h, seed, n)
	return h.Sum(nil)
}

// counters are the soak's results.
type counters struct {
	completed, resets, deadlines atomic.Int64
	errors, mismatches           atomic.Int64
	bytes                        atomic.Int64
	byMode                       [numModes]atomic.Int64

	mu       sync.Mutex
	examples []string
}

func (c *counters) fail(mismatch bool, format string, args ...any) {
	if mismatch {
		c.mismatches.Add(1)
	} else {
		c.errors.Add(1)
	}
	c.mu.Lock()
	if len(c.examples) < 20 {
		c.examples = append(c.examples, fmt.Sprintf(format, args...))
	}
	c.mu.Unlock()
}

func main() {
	dur := flag.Duration("d", 60*time.Second, "how long to churn streams")
	conc := flag.Int("c", 64, "streams at once")
	maxSize := flag.Int("max", 4<<20, "largest stream payload, bytes")
	every := flag.Duration("every", 10*time.Second, "progress interval")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	os.Exit(run(*dur, *conc, *maxSize, *every, *seed))
}

func run(dur time.Duration, conc, maxSize int, every time.Duration, seed uint64) int {
	fmt.Printf("soak: %v, %d streams at once, payloads up to %d bytes, seed %d\n", dur, conc, maxSize, seed)
	baseGoroutines := runtime.NumGoroutine()

	cc, sc, err := tcpPair()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	cfg := yamux.DefaultConfig()
	client, err := yamux.Client(cc, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	server, err := yamux.Server(sc, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}

	var c counters
	var serverWG sync.WaitGroup
	serverWG.Add(1)
	go func() {
		defer serverWG.Done()
		for {
			st, err := server.AcceptStream(context.Background())
			if err != nil {
				return
			}
			serverWG.Add(1)
			go func() {
				defer serverWG.Done()
				serve(st, &c)
			}()
		}
	}()

	start := time.Now()
	stop := start.Add(dur)
	var workers sync.WaitGroup
	for w := range conc {
		workers.Add(1)
		go func() {
			defer workers.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for time.Now().Before(stop) {
				if client.IsClosed() {
					c.fail(false, "client session ended: %v", client.Err())
					return
				}
				runStream(client, rng, maxSize, &c)
			}
		}()
	}

	progress := func(final bool) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		el := time.Since(start).Round(time.Second)
		total := c.completed.Load() + c.resets.Load() + c.deadlines.Load()
		label := "progress"
		if final {
			label = "final"
		}
		fmt.Printf("%s %v: streams %d (%.0f/s): completed %d, reset %d, deadline %d, errors %d, mismatches %d; %d MiB moved; goroutines %d, heap %d MiB, open streams %d/%d\n",
			label, el, total, float64(total)/max(time.Since(start).Seconds(), 1e-9),
			c.completed.Load(), c.resets.Load(), c.deadlines.Load(), c.errors.Load(), c.mismatches.Load(),
			c.bytes.Load()>>20, runtime.NumGoroutine(), ms.HeapAlloc>>20, client.NumStreams(), server.NumStreams())
	}
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	tick := time.NewTicker(every)
	for waiting := true; waiting; {
		select {
		case <-tick.C:
			progress(false)
		case <-done:
			waiting = false
		}
	}
	tick.Stop()

	failed := false
	// Every stream has finished at both ends: none may stay in the tables.
	for deadline := time.Now().Add(10 * time.Second); client.NumStreams()+server.NumStreams() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n, m := client.NumStreams(), server.NumStreams(); n+m > 0 {
		fmt.Printf("FAIL: %d client and %d server streams still open after every stream finished\n", n, m)
		failed = true
	}
	if err := client.Err(); err != nil {
		fmt.Printf("FAIL: client session ended: %v\n", err)
		failed = true
	}
	if err := server.Err(); err != nil {
		fmt.Printf("FAIL: server session ended: %v\n", err)
		failed = true
	}
	progress(true)
	client.Close()
	server.Close()
	serverWG.Wait()

	// Goroutines: back to where we started (the runtime may take a moment
	// to retire the connection's poller goroutines).
	var g int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		g = runtime.NumGoroutine()
		if g <= baseGoroutines || time.Now().After(deadline) {
			break
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("after Close: goroutines %d (at start %d), heap %d KiB\n", g, baseGoroutines, ms.HeapAlloc>>10)
	for i, n := range modeNames {
		fmt.Printf("  %-13s %d\n", n, c.byMode[i].Load())
	}
	if g > baseGoroutines {
		fmt.Printf("FAIL: %d goroutines left behind\n", g-baseGoroutines)
		failed = true
	}
	if c.mismatches.Load() > 0 || c.errors.Load() > 0 {
		fmt.Printf("FAIL: %d checksum mismatches, %d unexpected errors; first ones:\n", c.mismatches.Load(), c.errors.Load())
		for _, e := range c.examples {
			fmt.Println("  ", e)
		}
		failed = true
	}
	if failed {
		return 1
	}
	fmt.Println("PASS")
	return 0
}

func tcpPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		cc.Close()
		return nil, nil, r.err
	}
	return cc, r.c, nil
}

// randomSize is skewed towards small streams: half under 4 KiB, a third
// under 256 KiB, the rest up to max.
func randomSize(rng *rand.Rand, maxSize int) uint64 {
	switch r := rng.IntN(100); {
	case r < 50:
		return uint64(rng.IntN(min(4<<10, maxSize) + 1))
	case r < 85:
		return uint64(rng.IntN(min(256<<10, maxSize) + 1))
	}
	return uint64(rng.IntN(maxSize + 1))
}

// runStream runs one stream from the client side.
func runStream(sess *yamux.Session, rng *rand.Rand, maxSize int, c *counters) {
	req := request{mode: byte(rng.IntN(numModes)), size: randomSize(rng, maxSize), seed: rng.Uint64()}
	if req.mode == modeClientReset || req.mode == modeServerReset {
		req.size = max(req.size, 2)
		req.arg = uint64(rng.Int64N(int64(req.size)))
	}
	c.byMode[req.mode].Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := sess.OpenStream(ctx)
	cancel()
	if err != nil {
		c.fail(false, "OpenStream: %v", err)
		return
	}
	defer st.Close()
	// Nothing in the soak should take a minute: a stuck stream is an error.
	st.SetDeadline(time.Now().Add(time.Minute))
	name := fmt.Sprintf("stream %d (%s, %d bytes)", st.StreamID(), modeNames[req.mode], req.size)
	if _, err := st.Write(req.encode()); err != nil {
		c.fail(false, "%s: write request: %v", name, err)
		return
	}

	switch req.mode {
	case modeEcho, modeHalfClose, modeDownload:
		werr := make(chan error, 1)
		go func() {
			var err error
			if req.mode != modeDownload {
				_, err = writeGen(st, req.seed, req.size)
			}
			if err == nil {
				err = st.CloseWrite()
			}
			werr <- err
		}()
		v := newVerifier(req.seed)
		var got []byte
		buf := make([]byte, 32<<10)
		var rerr error
		for {
			n, err := st.Read(buf)
			if req.mode == modeHalfClose {
				got = append(got, buf[:n]...)
			} else {
				v.check(buf[:n])
			}
			if err != nil {
				rerr = err
				break
			}
		}
		if err := <-werr; err != nil {
			c.fail(false, "%s: write: %v", name, err)
			return
		}
		if rerr != io.EOF {
			c.fail(false, "%s: read: %v", name, rerr)
			return
		}
		if req.mode == modeHalfClose {
			if !bytes.Equal(got, expectedSum(req.seed, req.size)) {
				c.fail(true, "%s: server's checksum %x differs from ours", name, got)
				return
			}
		} else if v.bad || v.n != req.size || !bytes.Equal(v.sum.Sum(nil), expectedSum(req.seed, req.size)) {
			c.fail(true, "%s: received %d bytes whose checksum differs (byte mismatch: %v)", name, v.n, v.bad)
			return
		}
		moved := req.size // download: one way; half-close: one way and a checksum
		if req.mode == modeEcho {
			moved *= 2
		}
		c.bytes.Add(int64(moved))
		c.completed.Add(1)

	case modeClientReset:
		if _, err := writeGen(st, req.seed, req.arg); err != nil {
			c.fail(false, "%s: write before reset: %v", name, err)
			return
		}
		st.Reset()
		if _, err := st.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
			c.fail(false, "%s: Read after our Reset = %v; want ErrStreamReset", name, err)
			return
		}
		c.bytes.Add(int64(req.arg))
		c.resets.Add(1)

	case modeServerReset:
		// Write everything; the server resets after arg bytes, so the
		// write or the read must fail with ErrStreamReset.
		_, werr := writeGen(st, req.seed, req.size)
		if werr == nil {
			_, werr = io.Copy(io.Discard, st)
		}
		if !errors.Is(werr, yamux.ErrStreamReset) {
			c.fail(false, "%s: after the server's reset: %v; want ErrStreamReset", name, werr)
			return
		}
		c.bytes.Add(int64(req.arg))
		c.resets.Add(1)

	case modeDeadline:
		wait := time.Duration(1+rng.IntN(20)) * time.Millisecond
		st.SetReadDeadline(time.Now().Add(wait))
		n, err := st.Read(make([]byte, 1))
		var ne net.Error
		if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			c.fail(false, "%s: Read past its deadline = %d, %v; want a timeout", name, n, err)
			return
		}
		st.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := st.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			c.fail(false, "%s: Write past its deadline = %v; want a timeout", name, err)
			return
		}
		// Clearing the deadline makes the stream usable again: FIN, then
		// the server's FIN.
		st.SetDeadline(time.Now().Add(time.Minute))
		if err := st.CloseWrite(); err != nil {
			c.fail(false, "%s: CloseWrite after deadlines: %v", name, err)
			return
		}
		if n, err := io.Copy(io.Discard, st); n != 0 || err != nil {
			c.fail(false, "%s: server sent %d bytes, %v; want nothing and EOF", name, n, err)
			return
		}
		c.deadlines.Add(1)
	}
}

// serve handles one stream on the server side.
func serve(st *yamux.Stream, c *counters) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(time.Minute))
	hdr := make([]byte, 25)
	if _, err := io.ReadFull(st, hdr); err != nil {
		if !errors.Is(err, yamux.ErrStreamReset) { // a client reset can beat its request
			c.fail(false, "server stream %d: read request: %v", st.StreamID(), err)
		}
		return
	}
	req := decodeRequest(hdr)
	name := fmt.Sprintf("server stream %d (%s, %d bytes)", st.StreamID(), modeNames[req.mode%numModes], req.size)
	buf := make([]byte, 32<<10)
	switch req.mode {
	case modeEcho:
		v := newVerifier(req.seed)
		for {
			n, err := st.Read(buf)
			v.check(buf[:n])
			if _, werr := st.Write(buf[:n]); werr != nil {
				c.fail(false, "%s: echo write: %v", name, werr)
				return
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				c.fail(false, "%s: read: %v", name, err)
				return
			}
		}
		if v.bad || v.n != req.size {
			c.fail(true, "%s: received %d bytes that differ from what was sent (byte mismatch: %v)", name, v.n, v.bad)
			return
		}
		if err := st.CloseWrite(); err != nil {
			c.fail(false, "%s: CloseWrite: %v", name, err)
		}

	case modeDownload:
		if _, err := writeGen(st, req.seed, req.size); err != nil {
			c.fail(false, "%s: write: %v", name, err)
			return
		}
		if err := st.CloseWrite(); err != nil {
			c.fail(false, "%s: CloseWrite: %v", name, err)
			return
		}
		if n, err := io.Copy(io.Discard, st); n != 0 || err != nil {
			c.fail(false, "%s: after the request: %d bytes, %v; want EOF", name, n, err)
		}

	case modeHalfClose:
		v := newVerifier(req.seed)
		for {
			n, err := st.Read(buf)
			v.check(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				c.fail(false, "%s: read: %v", name, err)
				return
			}
		}
		if v.bad {
			c.fail(true, "%s: received bytes that differ from what was sent", name)
		}
		// The client's direction is closed; ours is still open.
		if _, err := st.Write(v.sum.Sum(nil)); err != nil {
			c.fail(false, "%s: write checksum after the client's FIN: %v", name, err)
			return
		}
		if err := st.CloseWrite(); err != nil {
			c.fail(false, "%s: CloseWrite: %v", name, err)
		}

	case modeClientReset:
		v := newVerifier(req.seed)
		for {
			n, err := st.Read(buf)
			v.check(buf[:n])
			if err != nil {
				if !errors.Is(err, yamux.ErrStreamReset) {
					c.fail(false, "%s: read after %d bytes: %v; want ErrStreamReset", name, v.n, err)
				}
				break
			}
		}
		if v.bad || v.n > req.arg {
			c.fail(true, "%s: received %d bytes (client sent %d before its reset), byte mismatch: %v", name, v.n, req.arg, v.bad)
		}

	case modeServerReset:
		v := newVerifier(req.seed)
		for v.n < req.arg {
			n, err := st.Read(buf[:min(uint64(len(buf)), req.arg-v.n)])
			v.check(buf[:n])
			if err != nil {
				c.fail(false, "%s: read after %d bytes: %v", name, v.n, err)
				return
			}
		}
		if v.bad {
			c.fail(true, "%s: received bytes that differ from what was sent", name)
		}
		st.Reset()

	case modeDeadline:
		if n, err := io.Copy(io.Discard, st); n != 0 || err != nil {
			c.fail(false, "%s: %d bytes, %v; want nothing and EOF", name, n, err)
		}

	default:
		c.fail(false, "%s: unknown mode", name)
	}
}
