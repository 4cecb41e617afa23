package yamux

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// slotState of the session's direct slot, for tests.
func (s *Session) directState() slotState {
	s.direct.mu.Lock()
	defer s.direct.mu.Unlock()
	return s.direct.state
}

// TestDirectDeliveryIntegrity moves several MiB over three streams at once
// in writes and Reads of varied sizes, smaller and larger than the frames,
// and checks every byte (sha256), that part of them went straight into
// the Reads' buffers, and that the receive windows account for every byte
// read: with nothing buffered, what the peer may send plus what was
// consumed but not yet credited is the window.
func TestDirectDeliveryIntegrity(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		const streams, volume = 3, 6 << 20
		var wg sync.WaitGroup
		errs := make(chan error, 2*streams)
		for i := range streams {
			w, r := streamPair(t, client, server)
			// A window that stops being credited stalls the writer: fail
			// then instead of hanging (a bound on a failure, not a target).
			w.SetDeadline(time.Now().Add(time.Minute))
			r.SetDeadline(time.Now().Add(time.Minute))
			seed := uint64(i + 1)
			want := sha256.New()
			data := make([]byte, volume)
			rng := rand.New(rand.NewPCG(seed, 7))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			want.Write(data)
			wg.Add(2)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 1))
				for p := data; len(p) > 0; {
					n := min(len(p), 1+rng.IntN(300<<10))
					if _, err := w.Write(p[:n]); err != nil {
						errs <- fmt.Errorf("stream %d: Write: %w", i, err)
						return
					}
					p = p[n:]
				}
			}()
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 2))
				got := sha256.New()
				buf := make([]byte, 512<<10)
				for left := volume; left > 0; {
					n, err := r.Read(buf[:min(left, 1+rng.IntN(len(buf)))])
					got.Write(buf[:n])
					left -= n
					if err != nil {
						errs <- fmt.Errorf("stream %d: Read after %d bytes: %w", i, volume-left, err)
						return
					}
				}
				if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
					errs <- fmt.Errorf("stream %d: sha256 of what was read differs from what was written", i)
					return
				}
				r.mu.Lock()
				in, buffered := r.in, r.recv.size
				r.mu.Unlock()
				if buffered != 0 || uint64(in.avail)+uint64(in.unacked) != uint64(in.size) {
					errs <- fmt.Errorf("stream %d: after reading everything: buffered %d, window %+v: avail+unacked != size", i, buffered, in)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := server.stats.directBytes.Load(); n == 0 {
			t.Errorf("no byte was delivered directly")
		} else {
			t.Logf("%.0f%% of the bytes went straight into a Read's buffer", float64(n)*100/(streams*volume))
		}
	})
}

// TestDirectPartialAndFIN: a waiting Read smaller than the frame gets the
// frame's first bytes directly, the rest follows from the blocks in
// order; a frame with FIN read whole into a Read's buffer is followed by
// io.EOF.
func TestDirectPartialAndFIN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		payload := make([]byte, 10000)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		read := func(size int) ([]byte, error) {
			buf := make([]byte, size)
			n, err := st.Read(buf)
			return buf[:n], err
		}
		type result struct {
			b   []byte
			err error
		}
		done := make(chan result, 1)
		go func() { b, err := read(1000); done <- result{b, err} }()
		synctest.Wait()
		if s := p.sess.directState(); s != slotWaiting {
			t.Fatalf("slot while a Read waits: %d; want slotWaiting", s)
		}
		p.send(rawDataFrame(0, st.StreamID(), payload))
		r := <-done
		if r.err != nil || !bytes.Equal(r.b, payload[:1000]) {
			t.Fatalf("first Read = %d bytes, %v; want the frame's first 1000", len(r.b), r.err)
		}
		if n := p.sess.stats.directBytes.Load(); n != 1000 {
			t.Fatalf("direct bytes = %d; want 1000", n)
		}
		var rest []byte
		for len(rest) < 9000 {
			b, err := read(4096)
			if err != nil {
				t.Fatalf("Read after %d bytes of the rest: %v", len(rest), err)
			}
			rest = append(rest, b...)
		}
		if !bytes.Equal(rest, payload[1000:]) {
			t.Fatal("the rest of the frame differs")
		}

		// A frame with FIN that fits the waiting Read.
		go func() { b, err := read(64 << 10); done <- result{b, err} }()
		synctest.Wait()
		p.send(rawDataFrame(rawFIN, st.StreamID(), payload[:5000]))
		if r := <-done; r.err != nil || !bytes.Equal(r.b, payload[:5000]) {
			t.Fatalf("Read of the FIN frame = %d bytes, %v; want its 5000", len(r.b), r.err)
		}
		if n := p.sess.stats.directBytes.Load(); n != 6000 {
			t.Fatalf("direct bytes = %d; want 6000", n)
		}
		if _, err := read(1); err != io.EOF {
			t.Fatalf("Read after the FIN frame: %v; want io.EOF", err)
		}
		if s := p.sess.directState(); s != slotFree {
			t.Fatalf("slot after the Reads: %d; want slotFree", s)
		}
	})
}

// TestDirectFillInterrupted: the peer stalls in the middle of a frame
// that the receive loop is reading into a waiting Read's buffer. The
// Read must not return while its buffer may still be written, and must
// return when its deadline passes or the stream or session is closed;
// with a deadline it gets the bytes read so far, and the rest of the
// frame and what follows arrive later, in order, on a session that goes
// on.
func TestDirectFillInterrupted(t *testing.T) {
	causes := []struct {
		name    string
		act     func(p *rawPeer, st *Stream)
		wantErr error // nil: the partial data
	}{
		{"deadline", func(p *rawPeer, st *Stream) { time.Sleep(2 * time.Second) }, nil},
		{"SetReadDeadline", func(p *rawPeer, st *Stream) { st.SetReadDeadline(time.Now()) }, nil},
		{"Close", func(p *rawPeer, st *Stream) { st.Close() }, ErrStreamClosed},
		{"CloseRead", func(p *rawPeer, st *Stream) { st.CloseRead() }, ErrStreamClosed},
		{"Reset", func(p *rawPeer, st *Stream) { st.Reset() }, ErrStreamReset},
		{"session Close", func(p *rawPeer, st *Stream) { p.sess.Close() }, ErrSessionShutdown},
	}
	for _, c := range causes {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newRawPeer(t, rawPeerOptions{})
				st := p.openStream()
				id := st.StreamID()
				payload := make([]byte, 10000)
				for i := range payload {
					payload[i] = byte(i*13 + 1)
				}
				if c.name == "deadline" {
					st.SetReadDeadline(time.Now().Add(time.Second))
				}
				buf := make([]byte, 64<<10)
				type result struct {
					n   int
					err error
				}
				done := make(chan result, 1)
				go func() { n, err := st.Read(buf); done <- result{n, err} }()
				synctest.Wait()
				p.send(rawHeader(0, rawData, 0, id, uint32(len(payload))), payload[:3000])
				synctest.Wait() // the receive loop read the 3000 bytes and waits for more
				if s := p.sess.directState(); s != slotFilling {
					t.Fatalf("slot with the peer stalled mid-frame: %d; want slotFilling", s)
				}
				select {
				case r := <-done:
					t.Fatalf("Read returned (%d, %v) while its buffer was being filled", r.n, r.err)
				default:
				}
				c.act(p, st)
				r := <-done // in the bubble: a Read that never returns fails the test
				if c.wantErr != nil {
					if r.n != 0 || !errors.Is(r.err, c.wantErr) {
						t.Fatalf("Read = (%d, %v); want (0, %v)", r.n, r.err, c.wantErr)
					}
					if c.name == "session Close" {
						return
					}
				} else if r.err != nil || r.n != 3000 || !bytes.Equal(buf[:3000], payload[:3000]) {
					t.Fatalf("Read = (%d, %v); want the 3000 bytes read so far", r.n, r.err)
				}
				if s := p.sess.directState(); s != slotFree {
					t.Fatalf("slot after the Read returned: %d; want slotFree", s)
				}
				// The peer goes on: the rest of the frame, then another.
				p.send(payload[3000:], rawDataFrame(0, id, payload[:100]))
				if c.wantErr != nil {
					p.sync() // the session lives on and took the rest
					if p.sess.IsClosed() {
						t.Fatalf("session ended: %v", p.sess.Err())
					}
					return
				}
				st.SetReadDeadline(time.Time{})
				want := append(append([]byte(nil), payload[3000:]...), payload[:100]...)
				got := make([]byte, len(want))
				if _, err := io.ReadFull(st, got); err != nil {
					t.Fatalf("reading the rest: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatal("the rest of the frame and the next one came out of order or altered")
				}
				p.sync()
			})
		})
	}
}

// TestDirectDeadlineMidFrameTCP is the deadline case of
// TestDirectFillInterrupted over loopback TCP, where how much the receive
// loop read before the deadline is up to the kernel: the Read returns
// what it got (or ErrTimeout when that is nothing), and every byte still
// arrives once, in order.
func TestDirectDeadlineMidFrameTCP(t *testing.T) {
	p := newRawPeer(t, rawPeerOptions{tcp: true})
	st := p.openStream()
	id := st.StreamID()
	payload := make([]byte, 100000)
	for i := range payload {
		payload[i] = byte(i*31 + 5)
	}
	for round := range 5 {
		st.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		buf := make([]byte, 256<<10)
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() { n, err := st.Read(buf); done <- result{n, err} }()
		p.send(rawHeader(0, rawData, 0, id, uint32(len(payload))), payload[:30000])
		r := <-done
		if r.err != nil && !errors.Is(r.err, ErrTimeout) {
			t.Fatalf("round %d: Read = (%d, %v); want data or ErrTimeout", round, r.n, r.err)
		}
		if !bytes.Equal(buf[:r.n], payload[:r.n]) {
			t.Fatalf("round %d: the %d bytes read differ from what was sent", round, r.n)
		}
		p.send(payload[30000:])
		st.SetReadDeadline(time.Time{})
		rest := make([]byte, len(payload)-r.n)
		if _, err := io.ReadFull(st, rest); err != nil {
			t.Fatalf("round %d: reading the rest after %d bytes: %v", round, r.n, err)
		}
		if !bytes.Equal(rest, payload[r.n:]) {
			t.Fatalf("round %d: the rest after %d bytes differs", round, r.n)
		}
	}
	p.sync()
}
