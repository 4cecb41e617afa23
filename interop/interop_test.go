package interop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
	libp2p "github.com/libp2p/go-yamux/v5"
)

// direction is one way data or control can flow in a pair: from the end
// that opens the stream (or writes first) to the other.
type direction struct {
	name      string // "from=ours" or "from=peer"
	oursFirst bool   // from is our end
}

func (d direction) from(p *pair) mux {
	if d.oursFirst {
		return p.a
	}
	return p.b
}

func (d direction) to(p *pair) mux {
	if d.oursFirst {
		return p.b
	}
	return p.a
}

// directions: us to the peer, and the peer to us. With the pairing table
// (each of us client and server) this covers every role.
var directions = []direction{
	{"from=ours", true},
	{"from=peer", false},
}

// TestBulk64MiB sends 64 MiB one way on one stream, checked with SHA-256,
// once per pairing. The direction alternates so that the four pairings
// cover every combination on our side: we send as client (to hashicorp)
// and as server (to libp2p), and receive as server (from hashicorp) and as
// client (from libp2p); each peer both sends and receives.
func TestBulk64MiB(t *testing.T) {
	const size = 64 << 20
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		oursSends := p.oursClient == (p.peer == hashicorpImpl)
		o, a := establish(t, ctx, p.a, p.b)
		w, r, what := o, a, "ours to "+p.peer.name
		if !oursSends {
			w, r, what = a, o, p.peer.name+" to ours"
		}
		if err := transfer(ctx, w, r, size, 1); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		o.Close()
		a.Close()
	})
}

// streamSpec is one stream of TestConcurrentStreams.
type streamSpec struct {
	oursOpens bool // else the peer opens it
	echo      bool // else one-way: the acceptor sends nothing back
	data      []byte
	sum       [sha256.Size]byte
}

// TestConcurrentStreams runs 200 streams at once, half opened by each end,
// of random sizes up to 256 KiB, each echoed back or one-way. The opener
// sends a 4-byte index, the payload and FIN. The acceptor checks every
// byte by SHA-256 against the table, echoes the payload or nothing, and
// sends FIN; the opener checks the echo byte for byte.
func TestConcurrentStreams(t *testing.T) {
	const n = 200
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		rng := rand.New(rand.NewPCG(200, 0))
		specs := make([]streamSpec, n)
		opened := map[bool]int{}
		for i := range specs {
			s := &specs[i]
			s.oursOpens = i%2 == 0
			s.echo = rng.IntN(2) == 0
			s.data = payload(uint64(i), rng.IntN(256<<10+1))
			s.sum = sha256.Sum256(s.data)
			opened[s.oursOpens]++
		}

		var g group
		serve := func(side mux, name string, oursAccepts bool, count int) {
			g.Go(func() error {
				for range count {
					st, err := side.Accept(ctx)
					if err != nil {
						return fmt.Errorf("%s Accept: %w", name, err)
					}
					g.Go(func() error { return acceptStream(st, specs, oursAccepts) })
				}
				return nil
			})
		}
		serve(p.a, "our", true, opened[false])
		serve(p.b, p.peer.name, false, opened[true])
		for i := range specs {
			opener := p.b
			if specs[i].oursOpens {
				opener = p.a
			}
			g.Go(func() error { return openStream(ctx, opener, i, &specs[i]) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// openStream is the opener's side of one TestConcurrentStreams stream.
func openStream(ctx context.Context, m mux, i int, s *streamSpec) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("stream %d (opener, %d bytes, echo %v): %w", i, len(s.data), s.echo, err)
		}
	}()
	st, err := m.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	// The acceptor reads everything before it echoes, so writing all and
	// then reading cannot deadlock on flow control.
	var idx [4]byte
	binary.BigEndian.PutUint32(idx[:], uint32(i))
	if _, err := st.Write(idx[:]); err != nil {
		return err
	}
	if _, err := st.Write(s.data); err != nil {
		return err
	}
	if err := st.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if !s.echo {
		if len(got) != 0 {
			return fmt.Errorf("one-way stream got %d bytes back", len(got))
		}
		return nil
	}
	return checkEcho(got, s.data)
}

// acceptStream is the acceptor's side of one TestConcurrentStreams stream.
func acceptStream(st stream, specs []streamSpec, oursAccepts bool) (err error) {
	defer st.Close()
	var idx [4]byte
	if _, err := io.ReadFull(st, idx[:]); err != nil {
		return fmt.Errorf("acceptor reading index: %w", err)
	}
	i := int(binary.BigEndian.Uint32(idx[:]))
	if i >= len(specs) {
		return fmt.Errorf("acceptor got stream index %d", i)
	}
	s := &specs[i]
	defer func() {
		if err != nil {
			err = fmt.Errorf("stream %d (acceptor, %d bytes, echo %v): %w", i, len(s.data), s.echo, err)
		}
	}()
	if s.oursOpens == oursAccepts {
		return errors.New("accepted by the end that opened it")
	}
	data, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(data); len(data) != len(s.data) || sum != s.sum {
		return fmt.Errorf("received %d bytes with sha256 %x; want %d with %x", len(data), sum[:8], len(s.data), s.sum[:8])
	}
	if s.echo {
		if _, err := st.Write(data); err != nil {
			return err
		}
	}
	return st.CloseWrite()
}

// TestHalfCloseEcho: one end writes 1 MiB and half-closes; the other echoes
// everything back as it arrives, then closes when it reads EOF; the first
// reads the echo to EOF and compares. The writer reads while it writes:
// 1 MiB is more than any initial window, so the echo must flow back before
// the writer can finish.
func TestHalfCloseEcho(t *testing.T) {
	const size = 1<<20 + 777
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		for i, d := range directions {
			t.Run(d.name, func(t *testing.T) {
				w, e := establish(t, ctx, d.from(p), d.to(p))
				echoed := async(func() error { return echoUntilEOF(e) })
				data := payload(uint64(i), size)
				wrote := async(func() error {
					if _, err := w.Write(data); err != nil {
						return err
					}
					return w.CloseWrite()
				})
				got, err := io.ReadAll(w)
				if err != nil {
					t.Fatalf("reading the echo: %v", err)
				}
				if err := await(ctx, wrote); err != nil {
					t.Fatalf("writer: %v", err)
				}
				if err := await(ctx, echoed); err != nil {
					t.Fatalf("echoer: %v", err)
				}
				if err := checkEcho(got, data); err != nil {
					t.Fatal(err)
				}
				w.Close()
			})
		}
	})
}

// TestResetByUs: our Reset makes the peer's blocked Read and its next Write
// fail with the peer's own reset error (never a clean io.EOF), whichever
// end opened the stream; our own Read and Write then fail with
// ErrStreamReset.
func TestResetByUs(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		for _, d := range directions {
			t.Run(d.name, func(t *testing.T) {
				x, y := establish(t, ctx, d.from(p), d.to(p))
				o, a := x, y // ours, the peer's
				if !d.oursFirst {
					o, a = y, x
				}
				read := async(func() error {
					_, err := a.Read(make([]byte, 1))
					return err
				})
				if err := o.Reset(); err != nil {
					t.Fatalf("Reset: %v", err)
				}
				err := await(ctx, read)
				if !errors.Is(err, p.peer.errReset) { // never nil or a clean io.EOF
					t.Fatalf("%s Read after our Reset = %v; want %v", p.peer.name, err, p.peer.errReset)
				}
				if _, err := a.Write([]byte("x")); !errors.Is(err, p.peer.errReset) {
					t.Fatalf("%s Write after our Reset = %v; want %v", p.peer.name, err, p.peer.errReset)
				}
				if _, err := o.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
					t.Fatalf("our Read after our Reset = %v; want ErrStreamReset", err)
				}
				if _, err := o.Write([]byte("x")); !errors.Is(err, yamux.ErrStreamReset) {
					t.Fatalf("our Write after our Reset = %v; want ErrStreamReset", err)
				}
			})
		}
	})
}

// TestResetByPeer: the peer resets a stream; our blocked Read and our next
// Write fail with ErrStreamReset.
//
// hashicorp/yamux has no Stream.Reset. The RST it does send on its own is
// the one after StreamCloseTimeout: it half-closes, we never send FIN, and
// it resets the stream. Our Read then reports io.EOF (its FIN came first,
// so the data is complete) and our Write fails with ErrStreamReset.
func TestResetByPeer(t *testing.T) {
	forEachPairing(t, options{streamCloseTimeout: 50 * time.Millisecond}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		err := a.Reset()
		if errors.Is(err, errors.ErrUnsupported) {
			// hashicorp: FIN, then RST once streamCloseTimeout passed.
			if err := a.Close(); err != nil {
				t.Fatalf("%s Close: %v", p.peer.name, err)
			}
			if n, err := io.Copy(io.Discard, o); n != 0 || err != nil {
				t.Fatalf("our Read after %s's FIN: %d bytes, %v; want io.EOF", p.peer.name, n, err)
			}
			// Write until the RST arrives: the writes fill the peer's
			// window and then block until the reset wakes them.
			buf := make([]byte, 16<<10)
			for {
				if _, err = o.Write(buf); err != nil {
					break
				}
			}
			if !errors.Is(err, yamux.ErrStreamReset) {
				t.Fatalf("our Write after %s's close-timeout RST = %v; want ErrStreamReset", p.peer.name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s Reset: %v", p.peer.name, err)
		}
		if _, err := o.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
			t.Fatalf("our Read after %s's Reset = %v; want ErrStreamReset", p.peer.name, err)
		}
		if _, err := o.Write([]byte("x")); !errors.Is(err, yamux.ErrStreamReset) {
			t.Fatalf("our Write after %s's Reset = %v; want ErrStreamReset", p.peer.name, err)
		}
	})
}

// TestResetRefusedStream: a stream beyond the acceptor's limit is refused
// with RST, in both directions. The opener's Read fails with its reset
// error; the stream that fit still works. The peers refuse beyond their
// accept backlog of 1 (in both, AcceptBacklog also caps the opener's own
// streams awaiting an ACK, so only the acceptor gets it); we queue a burst
// for AcceptStream and refuse beyond MaxIncomingStreams, here 1 (spec.md
// §3.2).
func TestResetRefusedStream(t *testing.T) {
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			o, wantErr := options{peerAcceptBacklog: 1}, func(*pair) error { return yamux.ErrStreamReset }
			if !d.oursFirst {
				o, wantErr = options{oursMaxIncoming: 1}, func(p *pair) error { return p.peer.errReset }
			}
			forEachPairing(t, o, func(t *testing.T, ctx context.Context, p *pair) {
				from, to := d.from(p), d.to(p)
				first, err := from.Open(ctx)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				second, err := from.Open(ctx)
				if err != nil {
					t.Fatalf("second Open: %v", err)
				}
				if _, err := second.Read(make([]byte, 1)); !errors.Is(err, wantErr(p)) {
					t.Fatalf("Read on the refused stream = %v; want %v", err, wantErr(p))
				}
				accepted, err := to.Accept(ctx)
				if err != nil {
					t.Fatalf("Accept: %v", err)
				}
				exchange(t, first, accepted, "first")
				exchange(t, accepted, first, "still works")
				first.Close()
				accepted.Close()
			})
		})
	}
}

// TestGoAwayByUs: after our GoAway the peer cannot open streams and we
// cannot either (ErrLocalGoAway).
//
// hashicorp treats GoAway(normal) as "no new streams": its OpenStream
// returns its ErrRemoteGoAway, and the stream opened before carries data
// both ways. libp2p/go-yamux v5 tears the whole session down on any
// GoAway: its OpenStream returns its ErrRemoteGoAway, its streams fail with
// it, it closes the connection, and our session ends with
// ErrSessionShutdown.
func TestGoAwayByUs(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		if err := p.a.GoAway(); err != nil {
			t.Fatalf("GoAway: %v", err)
		}
		if _, err := p.a.Open(ctx); !errors.Is(err, yamux.ErrLocalGoAway) &&
			!(p.peer.goAwayEndsSession && errors.Is(err, yamux.ErrSessionShutdown)) {
			// A peer that ends the session on GoAway may already have
			// closed the connection: then the session's end is the answer.
			t.Fatalf("our Open after our GoAway = %v; want ErrLocalGoAway", err)
		}
		if p.peer.goAwayEndsSession {
			_, err := a.Read(make([]byte, 1))
			if !errors.Is(err, p.peer.errRemoteGoAway) {
				t.Fatalf("%s Read after our GoAway = %v; want %v", p.peer.name, err, p.peer.errRemoteGoAway)
			}
			if _, err := p.b.Open(ctx); !errors.Is(err, p.peer.errRemoteGoAway) {
				t.Fatalf("%s Open after our GoAway = %v; want %v", p.peer.name, err, p.peer.errRemoteGoAway)
			}
			select {
			case <-p.ours.Done():
			case <-ctx.Done():
				t.Fatal("our session did not end after the peer closed the connection")
			}
			if err := p.ours.Err(); !errors.Is(err, yamux.ErrSessionShutdown) {
				t.Fatalf("our session ended with %v; want ErrSessionShutdown", err)
			}
			if _, err := o.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrSessionShutdown) {
				t.Fatalf("our Read after the session ended = %v; want ErrSessionShutdown", err)
			}
			return
		}
		// Frames arrive in order: once the peer has read what we wrote after
		// the GoAway, it has processed the GoAway.
		exchange(t, o, a, "after goaway")
		if _, err := p.b.Open(ctx); !errors.Is(err, p.peer.errRemoteGoAway) {
			t.Fatalf("%s Open after our GoAway = %v; want %v", p.peer.name, err, p.peer.errRemoteGoAway)
		}
		exchange(t, a, o, "reply")
		if rtt, err := p.b.Ping(ctx); err != nil || rtt <= 0 {
			t.Fatalf("%s Ping after our GoAway = %v, %v", p.peer.name, rtt, err)
		}
		if p.ours.IsClosed() {
			t.Fatalf("our session ended: %v", p.ours.Err())
		}
	})
}

// TestGoAwayByPeer: after the peer's GoAway(normal) our OpenStream fails
// with ErrRemoteGoAway (a *GoAwayError with code normal), while the stream
// opened before carries data both ways and our session stays up. Both peers
// keep their own session up after sending GoAway.
func TestGoAwayByPeer(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		if err := p.b.GoAway(); err != nil {
			t.Fatalf("%s GoAway: %v", p.peer.name, err)
		}
		// Frames arrive in order: once we have read what the peer wrote
		// after its GoAway, we have processed the GoAway.
		exchange(t, a, o, "after goaway")
		_, err := p.a.Open(ctx)
		var ga *yamux.GoAwayError
		if !errors.Is(err, yamux.ErrRemoteGoAway) || !errors.As(err, &ga) || *ga != (yamux.GoAwayError{Code: yamux.GoAwayNormal, Remote: true}) {
			t.Fatalf("our Open after %s's GoAway = %v; want ErrRemoteGoAway, code normal", p.peer.name, err)
		}
		exchange(t, o, a, "reply")
		if rtt, err := p.a.Ping(ctx); err != nil || rtt <= 0 {
			t.Fatalf("our Ping after %s's GoAway = %v, %v", p.peer.name, rtt, err)
		}
		if err := p.ours.Err(); err != nil {
			t.Fatalf("our session ended: %v", err)
		}
	})
}

// TestPing: our Ping against the peer, several at once, and the peer's
// Ping against us, one at a time, each measure a round trip. (Concurrent
// pings from hashicorp lose answers: see TestBugConcurrentPeerPings.)
func TestPing(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		var g group
		for range 3 {
			g.Go(func() error {
				rtt, err := p.a.Ping(ctx)
				if err != nil || rtt <= 0 {
					return fmt.Errorf("our Ping = %v, %v; want a positive round trip", rtt, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		if rtt := p.ours.RTT(); rtt <= 0 {
			t.Fatalf("RTT() = %v after pings; want > 0", rtt)
		}
		for range 3 {
			if rtt, err := p.b.Ping(ctx); err != nil || rtt <= 0 {
				t.Fatalf("%s Ping = %v, %v; want a positive round trip", p.peer.name, rtt, err)
			}
		}
	})
}

// TestSessionCloseByPeer: the peer closes its session (neither peer sends
// GoAway first: both just close the connection). Our blocked Read and
// AcceptStream return ErrSessionShutdown, never a clean io.EOF, and our
// session ends.
func TestSessionCloseByPeer(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, _ := establish(t, ctx, p.a, p.b)
		read := async(func() error {
			_, err := o.Read(make([]byte, 1))
			return err
		})
		accept := async(func() error {
			_, err := p.a.Accept(ctx)
			return err
		})
		if err := p.b.Close(); err != nil {
			t.Fatalf("%s Close: %v", p.peer.name, err)
		}
		if err := await(ctx, read); !errors.Is(err, yamux.ErrSessionShutdown) { // never a clean io.EOF
			t.Fatalf("our Read after %s closed = %v; want ErrSessionShutdown", p.peer.name, err)
		}
		if err := await(ctx, accept); !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Fatalf("our Accept after %s closed = %v; want ErrSessionShutdown", p.peer.name, err)
		}
		select {
		case <-p.ours.Done():
		case <-ctx.Done():
			t.Fatal("our session did not end")
		}
		if _, err := p.a.Open(ctx); !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Fatalf("our Open after %s closed = %v; want ErrSessionShutdown", p.peer.name, err)
		}
	})
}

// TestSessionCloseByUs: we close our session (GoAway(normal), then the
// connection). The peer's blocked Read returns its cutOffReadErr (for
// hashicorp a clean io.EOF), and its Accept and Open fail.
func TestSessionCloseByUs(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		_, a := establish(t, ctx, p.a, p.b)
		read := async(func() error {
			_, err := a.Read(make([]byte, 1))
			return err
		})
		accept := async(func() error {
			_, err := p.b.Accept(ctx)
			return err
		})
		if err := p.a.Close(); err != nil {
			t.Fatalf("our Close: %v", err)
		}
		if err := await(ctx, read); !errors.Is(err, p.peer.cutOffReadErr) {
			t.Fatalf("%s Read after we closed = %v; want %v", p.peer.name, err, p.peer.cutOffReadErr)
		}
		if err := await(ctx, accept); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s Accept after we closed = %v; want its session error", p.peer.name, err)
		}
		if _, err := p.b.Open(ctx); err == nil {
			t.Fatalf("%s Open after we closed succeeded", p.peer.name)
		}
	})
}

// TestResetWithErrorCode: libp2p/go-yamux v5's ResetWithError puts its
// code in the length field of the RST WindowUpdate, where the original
// protocol has a window delta. A small code resets the one stream and
// leaves our session up. (A code near 2³² ends our session: see
// TestBugResetWithErrorCode.)
func TestResetWithErrorCode(t *testing.T) {
	runPairings(t, pairingsOf(libp2pImpl), options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		if err := a.(*libp2p.Stream).ResetWithError(42); err != nil {
			t.Fatalf("ResetWithError: %v", err)
		}
		if _, err := o.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
			t.Fatalf("our Read after ResetWithError(42) = %v; want ErrStreamReset", err)
		}
		o2, a2 := establish(t, ctx, p.b, p.a)
		exchange(t, o2, a2, "session still up")
		if err := p.ours.Err(); err != nil {
			t.Fatalf("our session ended: %v", err)
		}
	})
}
