package yamux

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the resumption layer (spec.md §13) under a network that fails:
// a proxy cuts the connection at random byte offsets while streams move
// data both ways, and every byte must arrive once and in order, with no
// stream seeing an error.

// prngStream is the deterministic content of one direction of one stream.
func prngStream(seed uint64) io.Reader {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}

// sendPRNG writes n bytes of prngStream(seed) to w.
func sendPRNG(w io.Writer, seed uint64, n int64) error {
	_, err := io.Copy(w, io.LimitReader(prngStream(seed), n))
	return err
}

// checkPRNG reads r to its end and checks that it is exactly n bytes of
// prngStream(seed).
func checkPRNG(r io.Reader, seed uint64, n int64) error {
	want := prngStream(seed)
	got := make([]byte, 32<<10)
	exp := make([]byte, 32<<10)
	var off int64
	for {
		k, err := r.Read(got)
		if k > 0 {
			if off+int64(k) > n {
				return fmt.Errorf("seed %d: more than %d bytes", seed, n)
			}
			io.ReadFull(want, exp[:k])
			if !bytes.Equal(got[:k], exp[:k]) {
				return fmt.Errorf("seed %d: wrong bytes at offset %d..%d", seed, off, off+int64(k))
			}
			off += int64(k)
		}
		if err == io.EOF {
			if off != n {
				return fmt.Errorf("seed %d: EOF after %d bytes; want %d", seed, off, n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("seed %d: after %d bytes: %w", seed, off, err)
		}
	}
}

// A stream's first byte says what it is: 'b' bulk (then an 8-byte seed:
// the server checks n bytes of prngStream(seed) and answers with n bytes
// of prngStream(seed+1<<32)), 'r' an RPC loop (8-byte requests answered
// with their value plus one). Each bulk stream sends its outcome on errs
// (nil for success) when the server is done with it.
func resumeTestHandler(n int64, errs chan<- error) StreamHandler {
	return StreamHandlerFunc(func(st *Stream) {
		var kind [1]byte
		if _, err := io.ReadFull(st, kind[:]); err != nil {
			return // the client sees its stream fail
		}
		switch kind[0] {
		case 'b':
			var seed [8]byte
			if _, err := io.ReadFull(st, seed[:]); err != nil {
				errs <- fmt.Errorf("server: seed: %w", err)
				return
			}
			s := binary.BigEndian.Uint64(seed[:])
			sent := make(chan error, 1)
			go func() {
				err := sendPRNG(st, s+1<<32, n)
				st.CloseWrite()
				sent <- err
			}()
			err := checkPRNG(st, s, n)
			if serr := <-sent; err == nil && serr != nil {
				err = fmt.Errorf("send %d: %w", s, serr)
			}
			if err != nil {
				err = fmt.Errorf("server: %w", err)
			}
			errs <- err
		case 'r':
			var b [8]byte
			for {
				if _, err := io.ReadFull(st, b[:]); err != nil {
					return // the client checks the answers
				}
				binary.BigEndian.PutUint64(b[:], binary.BigEndian.Uint64(b[:])+1)
				if _, err := st.Write(b[:]); err != nil {
					return
				}
			}
		}
	})
}

// TestResumeSurvivesCuts: 100 streams move 256 KiB each way, checked
// byte for byte, and an RPC loop runs, while a proxy cuts the TCP
// connection five times at random offsets (some inside a resumption
// handshake). After each cut the client resumes; no stream sees an error,
// and the session goes through StateReconnecting and back.
func TestResumeSurvivesCuts(t *testing.T) {
	const (
		streams = 100
		size    = 256 << 10
		cuts    = 5
	)
	seed := rand.Uint64()
	t.Logf("cut offsets seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 15))
	// Connections 0, 1, 3 and 4 are cut while data flows; connection 2 is
	// cut inside its resumption handshake (157 bytes in all), so the
	// client reconnects 4 times.
	cutAt := func(i int) int64 { // called under the proxy's lock
		switch i {
		case 0:
			return 1<<20 + rnd.Int64N(4<<20)
		case 1, 3, 4:
			return 64<<10 + rnd.Int64N(6<<20)
		case 2:
			return 1 + rnd.Int64N(156)
		}
		return 0
	}
	errs := make(chan error, streams)
	rc := &ResumeConfig{MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	sess, rl, proxy := resumePair(t, resumeTestHandler(size, errs), nil, rc, cutAt)
	states := stateLog(sess)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Int32
	fail := func(format string, args ...any) {
		failed.Add(1)
		t.Errorf(format, args...)
	}
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := sess.OpenStream(ctx)
			if err != nil {
				fail("stream %d: open: %v", i, err)
				return
			}
			defer st.Close()
			s := uint64(i)
			hdr := binary.BigEndian.AppendUint64([]byte{'b'}, s)
			if _, err := st.Write(hdr); err != nil {
				fail("stream %d: %v", i, err)
				return
			}
			var wwg sync.WaitGroup
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				if err := sendPRNG(st, s, size); err != nil {
					fail("stream %d: send: %v", i, err)
				}
				st.CloseWrite()
			}()
			if err := checkPRNG(st, s+1<<32, size); err != nil {
				fail("stream %d: %v", i, err)
			}
			wwg.Wait()
		}()
	}
	rpcDone := make(chan struct{})
	var rpcs atomic.Int64
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		st, err := sess.OpenStream(ctx)
		if err != nil {
			fail("rpc: open: %v", err)
			return
		}
		defer st.Close()
		if _, err := st.Write([]byte{'r'}); err != nil {
			fail("rpc: %v", err)
			return
		}
		var b [8]byte
		for v := uint64(0); ; v++ {
			select {
			case <-rpcDone:
				return
			default:
			}
			binary.BigEndian.PutUint64(b[:], v)
			if _, err := st.Write(b[:]); err != nil {
				fail("rpc %d: %v", v, err)
				return
			}
			if _, err := io.ReadFull(st, b[:]); err != nil {
				fail("rpc %d: %v", v, err)
				return
			}
			if got := binary.BigEndian.Uint64(b[:]); got != v+1 {
				fail("rpc %d: answer %d", v, got)
				return
			}
			rpcs.Add(1)
		}
	}()
	wg.Wait()
	close(rpcDone)
	rwg.Wait()
	serverResults(t, ctx, errs, streams)
	log := states()
	rs, _ := sess.ResumeStats()
	t.Logf("cuts %d, rpcs %d, client %+v, server %+v, states %v", proxy.cuts.Load(), rpcs.Load(), rs, rl.Stats(), log)
	if n := proxy.cuts.Load(); n != cuts {
		t.Errorf("%d cuts happened; want %d", n, cuts)
	}
	// The log may miss a short connected spell between two cuts, never
	// the first reconnection nor the last return.
	if len(log) < 3 || log[0] || !log[1] || log[len(log)-1] {
		t.Errorf("states %v: want connected, reconnecting, ..., connected", log)
	}
	if rs.Reconnects != cuts-1 {
		t.Errorf("client reconnected %d times; want %d", rs.Reconnects, cuts-1)
	}
	if st := sess.State(); st != StateOpen {
		t.Errorf("State() = %v; want open", st)
	}
	if err := sess.Err(); err != nil {
		t.Errorf("session error %v", err)
	}
}

// TestResumeReplaysBothWays: a cut while both ends have unacknowledged
// data in flight; the counts exchanged at resumption decide what each end
// sends again, so each byte arrives once.
func TestResumeReplaysBothWays(t *testing.T) {
	errs := make(chan error, 1)
	const size = 4 << 20
	sess, rl, proxy := resumePair(t, resumeTestHandler(size, errs), nil, &ResumeConfig{MinBackoff: time.Millisecond}, func(i int) int64 {
		if i == 0 {
			return 3 << 20
		}
		return 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write(binary.BigEndian.AppendUint64([]byte{'b'}, 7))
	sent := make(chan error, 1)
	go func() {
		err := sendPRNG(st, 7, size)
		st.CloseWrite()
		sent <- err
	}()
	if err := checkPRNG(st, 7+1<<32, size); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	st.Close()
	serverResults(t, ctx, errs, 1)
	rs, _ := sess.ResumeStats()
	var srs ResumeStats
	rl.mu.Lock()
	for _, c := range rl.conns {
		srs = c.stats()
	}
	rl.mu.Unlock()
	if proxy.cuts.Load() != 1 || rs.Reconnects != 1 || srs.Reconnects != 1 || rs.ReplayedBytes+srs.ReplayedBytes == 0 {
		t.Errorf("cuts %d, client %+v, server %+v: want one cut, one reconnection, bytes replayed", proxy.cuts.Load(), rs, srs)
	}
}

// serverResults waits for n bulk streams' outcomes from the server.
func serverResults(t *testing.T, ctx context.Context, errs <-chan error, n int) {
	t.Helper()
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-ctx.Done():
			t.Fatalf("server streams did not finish: %v", ctx.Err())
		}
	}
}
