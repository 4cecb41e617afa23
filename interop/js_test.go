package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
)

// Data scenarios with the js-libp2p peer (jspeer_test.go), each both ways:
// ours=client runs our client session against the peer's server,
// ours=server the peer's client against our server session. Every byte is
// checked by SHA-256 at both ends: the peer reports the checksums of what
// it sent and received, and we compare them with ours.

// jsTimeout bounds each JS interop test, Node's start included. They take
// well under a second each, the 64 MiB and 64 × 1 MiB ones about a second
// under -race.
const jsTimeout = 60 * time.Second

// jsContext returns a context that ends after jsTimeout or with the test.
func jsContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), jsTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestJSBulk64MiB: one stream echoes 64 MiB, so that the data crosses our
// send path and our receive path, and the peer's, while both auto-tune
// their windows. ours=client: we send to the peer's echo server and
// read the echo while we write. ours=server: the peer sends, and we echo.
func TestJSBulk64MiB(t *testing.T) {
	const size = 64 << 20
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		_, sess := dialJS(t, ctx, nil)
		st, err := openCmd(ctx, sess, "echo")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := transfer(ctx, st, st, size, 1); err != nil {
			t.Fatal(err)
		}
		t.Logf("64 MiB echoed in %v", time.Since(start))
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "streams", "1", fmt.Sprint(size))
		var g group
		var hs hashes
		start := time.Now()
		acceptAll(ctx, &g, sess, func(st *yamux.Stream) error { return echoHashing(st, &hs) })
		e := p.mustNext(t, ctx, "echo")
		t.Logf("64 MiB echoed in %v", time.Since(start))
		checkJSEcho(t, e, size, &hs)
		p.mustNext(t, ctx, "done")
		p.wait(t, ctx)
		sess.Close()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// checkJSEcho checks a stream the peer echoed through us: what we received
// is what it sent, and what came back to it too.
func checkJSEcho(t *testing.T, e jsEvent, size int64, hs *hashes) {
	t.Helper()
	if e.Bytes != size || e.EchoBytes != size || e.EchoSHA256 != e.SHA256 {
		t.Fatalf("stream %d: js sent %d bytes (sha256 %.16s), got %d back (%.16s); want %d both ways", e.Stream, e.Bytes, e.SHA256, e.EchoBytes, e.EchoSHA256, size)
	}
	got, ok := hs.get(e.Stream)
	if !ok {
		t.Fatalf("stream %d: our end did not finish echoing it", e.Stream)
	}
	if got != e.SHA256 {
		t.Fatalf("stream %d: we received sha256 %.16s; js sent %.16s", e.Stream, got, e.SHA256)
	}
}

// TestJSConcurrentStreams: 64 × 1 MiB, 250 × 64 KiB and 1,000 × 1 KiB
// echoed streams at once, each checksummed, opened by our client and by
// the peer's client.
func TestJSConcurrentStreams(t *testing.T) {
	for _, c := range []struct {
		n    int
		size int64
	}{
		{64, 1 << 20},
		{250, 64 << 10},
		{1000, 1 << 10},
	} {
		t.Run(fmt.Sprintf("n=%d/size=%d", c.n, c.size), func(t *testing.T) {
			t.Run("ours=client", func(t *testing.T) {
				ctx := jsContext(t)
				_, sess := dialJS(t, ctx, nil)
				var g group
				for i := range c.n {
					g.Go(func() error {
						st, err := openCmd(ctx, sess, "echo")
						if err != nil {
							return fmt.Errorf("stream %d: %w", i, err)
						}
						defer st.Close()
						if err := transfer(ctx, st, st, c.size, uint64(i)); err != nil {
							return fmt.Errorf("stream %d (id %d): %w", i, st.StreamID(), err)
						}
						return nil
					})
				}
				if err := g.Wait(); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("ours=server", func(t *testing.T) {
				ctx := jsContext(t)
				// The peer opens all its streams at once, without waiting
				// for ACKs; our default limits queue them all
				// (TestJSStreamBurst).
				p, sess := serveJS(t, ctx, nil, "streams", fmt.Sprint(c.n), fmt.Sprint(c.size))
				var g group
				var hs hashes
				acceptAll(ctx, &g, sess, func(st *yamux.Stream) error { return echoHashing(st, &hs) })
				seen := make(map[uint32]bool)
				for range c.n {
					e := p.mustNext(t, ctx, "echo")
					if seen[e.Stream] {
						t.Fatalf("stream %d reported twice", e.Stream)
					}
					seen[e.Stream] = true
					checkJSEcho(t, e, c.size, &hs)
				}
				p.mustNext(t, ctx, "done")
				p.wait(t, ctx)
				sess.Close()
				if err := g.Wait(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestJSStreamBurst: the peer opens 1,000 streams at once, with no limit on
// how many await our ACK (we and the Go peers stop at AcceptBacklog, 256),
// each carrying "x" and FIN. Our server accepts none until the whole burst
// has arrived. With the defaults all 1,000 are queued (our accept queue is
// bounded by MaxIncomingStreams, 1024, spec.md §3.2) and then echoed. With
// MaxIncomingStreams at 256, the 744 beyond it are refused with RST, the
// data the peer sent on them (in flight when our RST came) is dropped
// without harm to the session, and the 256 are echoed.
func TestJSStreamBurst(t *testing.T) {
	const n = 1000
	for _, limit := range []int{0, 256} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			cfg := yamux.DefaultConfig()
			queued := n
			if limit > 0 {
				cfg.MaxIncomingStreams = limit
				queued = limit
			}
			ctx := jsContext(t)
			p, sess := serveJS(t, ctx, cfg, "burst", fmt.Sprint(n))
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for st := sess.Stats(); st.ActiveStreams < queued || st.StreamsRefused < uint64(n-queued); st = sess.Stats() {
				select {
				case <-tick.C:
				case <-ctx.Done():
					t.Fatalf("%d streams queued and %d refused; want %d and %d", st.ActiveStreams, st.StreamsRefused, queued, n-queued)
				}
			}
			var g group
			var hs hashes
			acceptAll(ctx, &g, sess, func(st *yamux.Stream) error { return echoHashing(st, &hs) })
			e := p.mustNext(t, ctx, "burst")
			want := map[string]int{"echoed": queued}
			if queued < n {
				want["StreamResetError"] = n - queued
			}
			if !maps.Equal(e.Counts, want) {
				t.Errorf("js streams ended %v; want %v", e.Counts, want)
			}
			p.mustNext(t, ctx, "done")
			p.wait(t, ctx)
			if st := sess.Stats(); st.StreamsRefused != uint64(n-queued) || st.StreamsAccepted != uint64(queued) {
				t.Errorf("our session refused %d streams and accepted %d; want %d and %d", st.StreamsRefused, st.StreamsAccepted, n-queued, queued)
			}
			sess.Close()
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestJSPing: pings both ways. The peer answers each of our concurrent
// pings; its own concurrent pings share one ping on the wire (only one is
// ever outstanding), and it measures round trips in whole milliseconds, so
// on loopback they are often 0.
func TestJSPing(t *testing.T) {
	ping3 := func(ctx context.Context, sess *yamux.Session) error {
		var g group
		for range 3 {
			g.Go(func() error {
				if rtt, err := sess.Ping(ctx); err != nil || rtt <= 0 {
					return fmt.Errorf("our Ping = %v, %v; want a positive round trip", rtt, err)
				}
				return nil
			})
		}
		return g.Wait()
	}
	checkRTTs := func(t *testing.T, e jsEvent) {
		t.Helper()
		if len(e.RTTs) != 6 {
			t.Fatalf("js reported %d pings; want 6", len(e.RTTs))
		}
		for _, rtt := range e.RTTs {
			if rtt < 0 || rtt > 5000 {
				t.Fatalf("js ping round trips %v ms; want 0..5000", e.RTTs)
			}
		}
	}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		if err := ping3(ctx, sess); err != nil {
			t.Fatal(err)
		}
		st, err := openCmd(ctx, sess, "ping")
		if err != nil {
			t.Fatal(err)
		}
		checkRTTs(t, p.mustNext(t, ctx, "ping"))
		if err := expectLine(st, "ready"); err != nil {
			t.Fatal(err)
		}
		if err := expectEOF(st); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "ping")
		var g group
		acceptAll(ctx, &g, sess, func(st *yamux.Stream) error {
			if err := expectLine(st, "ping"); err != nil {
				return err
			}
			if err := ping3(ctx, sess); err != nil {
				return err
			}
			if err := writeLine(st, "ready"); err != nil {
				return err
			}
			return st.CloseWrite()
		})
		checkRTTs(t, p.mustNext(t, ctx, "ping"))
		if e := p.mustNext(t, ctx, "pinged"); e.Read != "eof" {
			t.Errorf("js read after our pings: %s; want eof", e.Read)
		}
		p.mustNext(t, ctx, "done")
		p.wait(t, ctx)
		sess.Close()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// expectEOF checks that r has nothing more and ends with a clean io.EOF.
func expectEOF(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if n != 0 || err != nil {
		return fmt.Errorf("read %d more bytes and %v; want a clean io.EOF", n, err)
	}
	return nil
}

// TestJSHalfClose: after one end's FIN the other still sends, and the end
// that half-closed still reads, every byte checked.
//
// from=ours: we send 1 MiB and FIN; the peer echoes it, the rest of it
// after our FIN, then sends FIN. from=peer: the peer sends 1 MiB and FIN;
// we read it to EOF, then send 1 MiB and FIN, which it reads to its end.
// With ours=server the peer's client half-closes first.
func TestJSHalfClose(t *testing.T) {
	const size = 1<<20 + 777
	t.Run("ours=client/from=ours", func(t *testing.T) {
		ctx := jsContext(t)
		_, sess := dialJS(t, ctx, nil)
		st, err := openCmd(ctx, sess, "echo")
		if err != nil {
			t.Fatal(err)
		}
		if err := transfer(ctx, st, st, size, 7); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("x")); !errors.Is(err, yamux.ErrStreamClosed) {
			t.Fatalf("our Write after CloseWrite = %v; want ErrStreamClosed", err)
		}
	})
	// readThenReply reads the peer's data to EOF, then replies.
	readThenReply := func(st *yamux.Stream, hs *hashes, sent *hashes) error {
		_, sum, err := receiveAll(st)
		if err != nil {
			return fmt.Errorf("reading the js data: %w", err)
		}
		hs.put(st.StreamID(), sum[:])
		reply, err := sendRandom(st, size, 8)
		if err != nil {
			return fmt.Errorf("replying after the js FIN: %w", err)
		}
		sent.put(st.StreamID(), reply[:])
		return nil
	}
	check := func(t *testing.T, p *jsPeer, ctx context.Context, got, sent *hashes) {
		t.Helper()
		e := p.mustNext(t, ctx, "halfclose-sent")
		if h, _ := got.get(e.Stream); e.Bytes != size || h != e.SHA256 {
			t.Fatalf("we received sha256 %.16s; js sent %d bytes, %.16s", h, e.Bytes, e.SHA256)
		}
		e = p.mustNext(t, ctx, "halfclose-received")
		if h, _ := sent.get(e.Stream); e.Bytes != size || h != e.SHA256 {
			t.Fatalf("js received %d bytes, sha256 %.16s, after its FIN; we sent %d, %.16s", e.Bytes, e.SHA256, size, h)
		}
	}
	t.Run("ours=client/from=peer", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		st, err := openCmd(ctx, sess, fmt.Sprint("halfclose ", size))
		if err != nil {
			t.Fatal(err)
		}
		var got, sent hashes
		if err := readThenReply(st, &got, &sent); err != nil {
			t.Fatal(err)
		}
		check(t, p, ctx, &got, &sent)
	})
	t.Run("ours=server/from=peer", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "halfclose", fmt.Sprint(size))
		var g group
		var got, sent hashes
		acceptAll(ctx, &g, sess, func(st *yamux.Stream) error { return readThenReply(st, &got, &sent) })
		p.mustNext(t, ctx, "done")
		p.wait(t, ctx)
		sess.Close()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		check(t, p, ctx, &got, &sent)
	})
}
