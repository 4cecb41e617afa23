package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
)

// RST, GoAway and session ends between us and the js-libp2p peer, both
// ways. The peer reports what its end saw as a "watch" event: how its read
// ended, what a send, a new stream and a ping then do, and its stream's and
// muxer's status.

// wantWatch is what a "watch" event must say; empty fields are not checked.
type wantWatch struct {
	read, send, open, ping, status, muxer string
}

func checkWatch(t *testing.T, e jsEvent, w wantWatch) {
	t.Helper()
	for _, c := range []struct{ name, got, want string }{
		{"read", e.Read, w.read},
		{"send", e.Send, w.send},
		{"open", e.Open, w.open},
		{"ping", e.Ping, w.ping},
		{"stream status", e.Status, w.status},
		{"muxer status", e.Muxer, w.muxer},
	} {
		if c.want != "" && c.got != c.want {
			t.Errorf("js %s: %s; want %s", c.name, c.got, c.want)
		}
	}
}

// serveHello runs our server end for the peer's client: each stream starts
// with a hello line from it, and handlers[hello] serves the rest. A stream
// the peer resets before its hello (its probe of whether a stream can be
// opened) is ignored.
func serveHello(ctx context.Context, g *group, sess *yamux.Session, handlers map[string]func(*yamux.Stream) error) {
	acceptAll(ctx, g, sess, func(st *yamux.Stream) error {
		hello, err := readLine(st)
		if errors.Is(err, yamux.ErrStreamReset) {
			return nil
		}
		if err != nil {
			return err
		}
		h, ok := handlers[hello]
		if !ok {
			return fmt.Errorf("unexpected stream %q from the js peer", hello)
		}
		if err := writeLine(st, "ready"); err != nil {
			return err
		}
		return h(st)
	})
}

// finish waits for the peer's client to end, then closes our session and
// waits for our handlers.
func finish(t *testing.T, ctx context.Context, p *jsPeer, sess *yamux.Session, g *group) {
	t.Helper()
	p.mustNext(t, ctx, "done")
	p.wait(t, ctx)
	sess.Close()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// checkReset checks that our Read and Write on st fail with
// ErrStreamReset.
func checkReset(st *yamux.Stream, who string) error {
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
		return fmt.Errorf("our Read after %s = %v; want ErrStreamReset", who, err)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, yamux.ErrStreamReset) {
		return fmt.Errorf("our Write after %s = %v; want ErrStreamReset", who, err)
	}
	return nil
}

// TestJSResetByUs: our Reset makes the peer's blocked read fail with
// StreamResetError and its send with StreamStateError; its session stays
// up (it opens a stream and pings).
func TestJSResetByUs(t *testing.T) {
	want := wantWatch{read: "StreamResetError", send: "StreamStateError", open: "ok", status: "reset", muxer: "open"}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		st := mustOpenReady(t, ctx, sess, "watch")
		if err := st.Reset(); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		checkWatch(t, p.mustNext(t, ctx, "watch"), want)
		if err := checkReset(st, "our Reset"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "watch")
		var g group
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{
			"watch": func(st *yamux.Stream) error {
				if err := st.Reset(); err != nil {
					return err
				}
				return checkReset(st, "our Reset")
			},
		})
		w := want
		w.ping = "ok"
		checkWatch(t, p.mustNext(t, ctx, "watch"), w)
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSResetByPeer: the peer's RST (stream.abort) makes our blocked Read
// and our Write fail with ErrStreamReset; both sessions stay up.
func TestJSResetByPeer(t *testing.T) {
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		st := mustOpenReady(t, ctx, sess, "reset")
		if err := writeLine(st, "go"); err != nil {
			t.Fatal(err)
		}
		if err := checkReset(st, "the js reset"); err != nil {
			t.Fatal(err)
		}
		if e := p.mustNext(t, ctx, "reset"); e.Send != "StreamStateError" {
			t.Errorf("js send after its own reset: %s; want StreamStateError", e.Send)
		}
		echo, err := openCmd(ctx, sess, "echo")
		if err != nil {
			t.Fatal(err)
		}
		if err := transfer(ctx, echo, echo, 1000, 3); err != nil {
			t.Fatalf("a new stream after the reset: %v", err)
		}
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "reset")
		var g group
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{
			"reset":       func(st *yamux.Stream) error { return checkReset(st, "the js reset") },
			"after-reset": func(st *yamux.Stream) error { return st.CloseWrite() },
		})
		if e := p.mustNext(t, ctx, "reset"); e.Send != "StreamStateError" {
			t.Errorf("js send after its own reset: %s; want StreamStateError", e.Send)
		}
		if e := p.mustNext(t, ctx, "after-reset"); e.Read != "eof" {
			t.Errorf("js read on a new stream after the reset: %s; want eof", e.Read)
		}
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSGoAwayByUs: our GoAway(normal). We open no more streams
// (ErrLocalGoAway). The peer treats any GoAway as the end of the session:
// every stream of its ends at once as if both directions had finished
// (its read ends cleanly, "eof"), though neither FIN nor RST is sent, and
// its muxer is closed, so it cannot open streams or ping. It does not
// close the connection and still answers our pings, but it sends nothing
// more on the stream: our end of it stays open, and our Read waits until
// its deadline.
func TestJSGoAwayByUs(t *testing.T) {
	want := wantWatch{read: "eof", send: "StreamStateError", open: "MuxerClosedError", status: "closed", muxer: "closed"}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		st := mustOpenReady(t, ctx, sess, "watch")
		if err := sess.GoAway(); err != nil {
			t.Fatalf("GoAway: %v", err)
		}
		if _, err := sess.OpenStream(ctx); !errors.Is(err, yamux.ErrLocalGoAway) {
			t.Fatalf("our Open after our GoAway = %v; want ErrLocalGoAway", err)
		}
		checkWatch(t, p.mustNext(t, ctx, "watch"), want)
		checkStranded(t, ctx, sess, st)
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "watch")
		var g group
		stranded := make(chan *yamux.Stream, 1)
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{
			"watch": func(st *yamux.Stream) error {
				if err := sess.GoAway(); err != nil {
					return err
				}
				stranded <- st
				return nil
			},
		})
		w := want
		w.ping = "MuxerClosedError"
		checkWatch(t, p.mustNext(t, ctx, "watch"), w)
		select {
		case st := <-stranded:
			checkStranded(t, ctx, sess, st)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		// The peer waits for us to close the connection its muxer left.
		sess.Close()
		finish(t, ctx, p, sess, &g)
	})
}

// checkStranded checks our end of a stream the peer dropped on our GoAway:
// our session is up and the peer answers pings, but nothing more arrives
// on the stream, and what we write there is dropped by the peer.
func checkStranded(t *testing.T, ctx context.Context, sess *yamux.Session, st *yamux.Stream) {
	t.Helper()
	if _, err := sess.Ping(ctx); err != nil {
		t.Fatalf("our Ping after our GoAway: %v", err)
	}
	if _, err := st.Write([]byte("after goaway")); err != nil {
		t.Fatalf("our Write after our GoAway: %v", err)
	}
	st.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := st.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrTimeout) {
		t.Fatalf("our Read on a stream the js peer dropped = %d, %v; want ErrTimeout", n, err)
	}
	if err := sess.Err(); err != nil {
		t.Fatalf("our session ended: %v", err)
	}
}

// TestJSGoAwayByPeer: the peer's GoAway(normal) (its muxer's sendGoAway).
// Our OpenStream fails with ErrRemoteGoAway (code normal), the stream
// opened before carries data both ways, and we can still ping it. After
// its own GoAway the peer opens no streams and cannot ping
// (MuxerClosedError), though it answers our pings.
func TestJSGoAwayByPeer(t *testing.T) {
	checkOpen := func(ctx context.Context, sess *yamux.Session) error {
		_, err := sess.OpenStream(ctx)
		var ga *yamux.GoAwayError
		if !errors.Is(err, yamux.ErrRemoteGoAway) || !errors.As(err, &ga) || *ga != (yamux.GoAwayError{Code: yamux.GoAwayNormal, Remote: true}) {
			return fmt.Errorf("our Open after the js GoAway = %v; want ErrRemoteGoAway, code normal", err)
		}
		if _, err := sess.Ping(ctx); err != nil {
			return fmt.Errorf("our Ping after the js GoAway: %w", err)
		}
		return nil
	}
	checkEvent := func(t *testing.T, e jsEvent) {
		t.Helper()
		if e.Open != "MuxerClosedError" || e.Ping != "MuxerClosedError" {
			t.Errorf("js open and ping after its own GoAway: %s, %s; want MuxerClosedError for both", e.Open, e.Ping)
		}
	}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		// Frames arrive in order: "ready" comes after the GoAway.
		st := mustOpenReady(t, ctx, sess, "goaway")
		if err := checkOpen(ctx, sess); err != nil {
			t.Fatal(err)
		}
		checkEvent(t, p.mustNext(t, ctx, "goaway"))
		if err := transfer(ctx, st, st, 100<<10, 4); err != nil {
			t.Fatalf("the stream opened before the GoAway: %v", err)
		}
		if err := sess.Err(); err != nil {
			t.Fatalf("our session ended: %v", err)
		}
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "goaway")
		var g group
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{
			"goaway": func(st *yamux.Stream) error {
				if err := expectLine(st, "after goaway"); err != nil {
					return err
				}
				if err := checkOpen(ctx, sess); err != nil {
					return err
				}
				// The peer waits for the reply: its session is not ending.
				if err := sess.Err(); err != nil {
					return fmt.Errorf("our session ended: %w", err)
				}
				if err := writeLine(st, "reply"); err != nil {
					return err
				}
				if err := expectEOF(st); err != nil {
					return err
				}
				return st.CloseWrite()
			},
		})
		e := p.mustNext(t, ctx, "goaway")
		if e.Reply != "reply" {
			t.Errorf("js read %q after its GoAway; want %q", e.Reply, "reply")
		}
		checkEvent(t, e)
		if e := p.mustNext(t, ctx, "goaway-end"); e.Read != "eof" {
			t.Errorf("js read at the end: %s; want eof", e.Read)
		}
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSSessionCloseByUs: we close the session (GoAway(normal), then the
// connection) under a stream the peer is reading. The peer's read ends
// cleanly ("eof"), as on our GoAway alone: a stream cut off by the end of
// the session cannot be told from a finished one. Our own Read fails with
// ErrSessionShutdown.
func TestJSSessionCloseByUs(t *testing.T) {
	want := wantWatch{read: "eof", send: "StreamStateError", open: "MuxerClosedError", status: "closed", muxer: "closed"}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		st := mustOpenReady(t, ctx, sess, "watch")
		if err := sess.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		checkWatch(t, p.mustNext(t, ctx, "watch"), want)
		if e := p.mustNext(t, ctx, "connection-closed"); e.Muxer != "closed" {
			t.Errorf("js muxer after the connection closed: %s", e.Muxer)
		}
		p.wait(t, ctx)
		if _, err := st.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Fatalf("our Read after our Close = %v; want ErrSessionShutdown", err)
		}
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "watch")
		var g group
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{
			"watch": func(st *yamux.Stream) error { return sess.Close() },
		})
		w := want
		w.ping = "MuxerClosedError"
		checkWatch(t, p.mustNext(t, ctx, "watch"), w)
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSSessionCloseByPeer: the peer closes its session the way a
// js-libp2p connection does: FIN on every stream, GoAway(normal), then the
// connection. Our blocked Reads see a clean io.EOF (the FINs came first),
// and our session ends with the peer's GoAway as its cause: Accept and Open
// then fail with ErrSessionShutdown.
func TestJSSessionCloseByPeer(t *testing.T) {
	check := func(t *testing.T, ctx context.Context, sess *yamux.Session) {
		t.Helper()
		select {
		case <-sess.Done():
		case <-ctx.Done():
			t.Fatal("our session did not end")
		}
		if _, err := sess.AcceptStream(ctx); !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Errorf("our Accept after the js close = %v; want ErrSessionShutdown", err)
		}
		if _, err := sess.OpenStream(ctx); !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Errorf("our Open after the js close = %v; want ErrSessionShutdown", err)
		}
		var ga *yamux.GoAwayError
		if err := sess.Err(); !errors.As(err, &ga) || *ga != (yamux.GoAwayError{Code: yamux.GoAwayNormal, Remote: true}) {
			t.Errorf("our session ended with %v; want the js GoAway(normal)", err)
		}
	}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		idle, err := openCmd(ctx, sess, "echo")
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, idle, idle, "established")
		read := async(func() error { return expectEOF(idle) })
		closer := mustOpenReady(t, ctx, sess, "close")
		if err := writeLine(closer, "go"); err != nil {
			t.Fatal(err)
		}
		if err := await(ctx, read); err != nil {
			t.Errorf("idle stream: %v", err)
		}
		if err := expectEOF(closer); err != nil {
			t.Errorf("closing stream: %v", err)
		}
		p.mustNext(t, ctx, "closed")
		check(t, ctx, sess)
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "close")
		var g group
		eof := func(st *yamux.Stream) error { return expectEOF(st) }
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{"idle": eof, "close": eof})
		p.mustNext(t, ctx, "closed")
		check(t, ctx, sess)
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSSessionAbortByPeer: the peer aborts its session (muxer.abort,
// then the connection's abort, as a js-libp2p connection does on an
// error): RST on every stream, GoAway, then a TCP reset (@libp2p/tcp's
// resetAndDestroy). Our blocked Reads fail with ErrStreamReset, and our
// session ends with the connection reset: only a clean end of the
// connection after a GoAway makes the GoAway the cause (spec.md §6).
//
// The peer's GoAway says normal, not internal error: YamuxMuxer.abort means
// to send the error's code if it is a protocol error and internal error
// otherwise, but its isProtocolError(err) is err?.reason !== null, true of
// any error without a reason field, so it sends sendGoAway(undefined),
// which defaults to normal (@chainsafe/libp2p-yamux 8.0.1).
func TestJSSessionAbortByPeer(t *testing.T) {
	check := func(t *testing.T, ctx context.Context, sess *yamux.Session) {
		t.Helper()
		select {
		case <-sess.Done():
		case <-ctx.Done():
			t.Fatal("our session did not end")
		}
		if err := sess.Err(); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("our session ended with %v; want the connection reset", err)
		}
	}
	wantReset := func(st *yamux.Stream) error {
		if _, err := io.Copy(io.Discard, st); !errors.Is(err, yamux.ErrStreamReset) {
			return fmt.Errorf("our Read after the js abort = %v; want ErrStreamReset", err)
		}
		return nil
	}
	t.Run("ours=client", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := dialJS(t, ctx, nil)
		idle, err := openCmd(ctx, sess, "echo")
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, idle, idle, "established")
		read := async(func() error { return wantReset(idle) })
		aborter := mustOpenReady(t, ctx, sess, "abort")
		if err := writeLine(aborter, "go"); err != nil {
			t.Fatal(err)
		}
		if err := await(ctx, read); err != nil {
			t.Errorf("idle stream: %v", err)
		}
		if err := wantReset(aborter); err != nil {
			t.Errorf("aborting stream: %v", err)
		}
		p.mustNext(t, ctx, "aborted")
		check(t, ctx, sess)
	})
	t.Run("ours=server", func(t *testing.T) {
		ctx := jsContext(t)
		p, sess := serveJS(t, ctx, nil, "abort")
		var g group
		serveHello(ctx, &g, sess, map[string]func(*yamux.Stream) error{"idle": wantReset, "abort": wantReset})
		p.mustNext(t, ctx, "aborted")
		check(t, ctx, sess)
		finish(t, ctx, p, sess, &g)
	})
}

// TestJSCloseWhilePeerWrites: we Close a stream the peer keeps writing to.
// What it sends after our Close has no reader, so we answer with RST
// (spec.md §3.3), and the peer's writer fails instead of waiting forever
// for window.
func TestJSCloseWhilePeerWrites(t *testing.T) {
	ctx := jsContext(t)
	p, sess := dialJS(t, ctx, nil)
	st, err := openCmd(ctx, sess, "flood")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, 100<<10)); err != nil {
		t.Fatalf("reading the flood: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e := p.mustNext(t, ctx, "flood")
	if e.Error != "StreamResetError" && e.Error != "StreamStateError" {
		t.Fatalf("js writer ended with %s after %d bytes; want StreamResetError (or StreamStateError: sending on a reset stream)", e.Error, e.Bytes)
	}
	if _, err := sess.Ping(ctx); err != nil {
		t.Fatalf("our session after the RST: %v", err)
	}
}

// TestJSStreamOpenTimeout: the peer acknowledges a stream it accepted only
// with the first frame it sends on it, which it sends when it writes or
// when our first data arrives (its window update), not when it accepts.
// A stream we open and do not write on, to a peer that waits for us, stays
// unacknowledged, and our StreamOpenTimeout resets it (75 s by default;
// 500 ms here). With hashicorp/yamux and libp2p/go-yamux the ACK comes
// when the stream is accepted.
func TestJSStreamOpenTimeout(t *testing.T) {
	ctx := jsContext(t)
	cfg := yamux.DefaultConfig()
	cfg.StreamOpenTimeout = 500 * time.Millisecond
	p, sess := dialJS(t, ctx, cfg)
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bound(ctx, st)
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamOpenTimeout) {
		t.Fatalf("our Read on a stream never acknowledged = %v; want ErrStreamOpenTimeout", err)
	}
	// The peer's end was waiting for our command line; our RST ends it.
	if e := p.mustNext(t, ctx, "stream-error"); e.Error != "StreamResetError" {
		t.Errorf("the js end of the stream ended with %s; want StreamResetError", e.Error)
	}
	// A stream we write on is acknowledged (by the window update for our
	// data), so it outlives the timeout.
	echo, err := openCmd(ctx, sess, "echo")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(cfg.StreamOpenTimeout + 200*time.Millisecond)
	if err := transfer(ctx, echo, echo, 1000, 5); err != nil {
		t.Fatalf("a stream we wrote on: %v", err)
	}
}

// TestJSLatePingAnswer: the peer treats an answer to a ping it has given up
// on as a protocol error (UnRequestedPingError) and ends the session:
// GoAway(protocol error), then a TCP reset. Our answer is correct; we
// ignore an answer that matches nothing (spec.md §5). The peer gives up on
// its keepalive ping when it receives GoAway, so our GoAway(normal) during
// its first ping, right after the session starts, ends the session
// (js/peer.mjs waits for that ping before it starts anything). Here it
// pings with a signal that is already aborted.
func TestJSLatePingAnswer(t *testing.T) {
	ctx := jsContext(t)
	p, sess := dialJS(t, ctx, nil)
	if _, err := openCmd(ctx, sess, "abandon-ping"); err != nil {
		t.Fatal(err)
	}
	if e := p.mustNext(t, ctx, "abandoned-ping"); e.Error != "AbortError" {
		t.Errorf("js ping with an aborted signal: %s; want AbortError", e.Error)
	}
	p.mustNext(t, ctx, "connection-closed")
	select {
	case <-sess.Done():
	case <-ctx.Done():
		t.Fatal("our session did not end")
	}
	// The reset may come before we read the GoAway that preceded it.
	var ga *yamux.GoAwayError
	err := sess.Err()
	t.Logf("our session ended with %v", err)
	if !(errors.As(err, &ga) && *ga == yamux.GoAwayError{Code: yamux.GoAwayProtocolError, Remote: true}) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("our session ended with %v; want the js GoAway(protocol error) or a connection reset", err)
	}
}

// TestJSResetWithCode: our RST with an error code in its length field
// (spec.md §3.4) is a plain reset to the peer, which has no codes: it adds
// the field to its send window, without an overflow check, and its
// session stays up.
func TestJSResetWithCode(t *testing.T) {
	ctx := jsContext(t)
	p, sess := dialJS(t, ctx, nil)
	st := mustOpenReady(t, ctx, sess, "watch")
	if err := st.ResetWithCode(math.MaxUint32); err != nil {
		t.Fatalf("ResetWithCode: %v", err)
	}
	checkWatch(t, p.mustNext(t, ctx, "watch"), wantWatch{read: "StreamResetError", send: "StreamStateError", open: "ok", status: "reset", muxer: "open"})
	if _, err := sess.Ping(ctx); err != nil {
		t.Fatalf("our session after ResetWithCode: %v", err)
	}
}

// TestJSCloseWithCode: our final GoAway with an error code. Unlike
// GoAway(normal), which it takes as a clean end of every stream
// (TestJSSessionCloseByUs), the peer aborts: its reads fail with the error
// it makes up for the occasion, a plain Error ("Remote sent GoAway").
func TestJSCloseWithCode(t *testing.T) {
	ctx := jsContext(t)
	p, sess := dialJS(t, ctx, nil)
	mustOpenReady(t, ctx, sess, "watch")
	if err := sess.CloseWithCode(yamux.GoAwayInternalError); err != nil {
		t.Fatalf("CloseWithCode: %v", err)
	}
	checkWatch(t, p.mustNext(t, ctx, "watch"), wantWatch{read: "Error", send: "StreamStateError", open: "MuxerClosedError", status: "aborted", muxer: "closed"})
	p.mustNext(t, ctx, "connection-closed")
}
