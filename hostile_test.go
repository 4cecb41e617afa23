package yamux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// Hostile peers: each test plays one kind of bad input against a real
// Session through a rawPeer and asserts the exact reaction on the wire and
// the typed error users see (spec.md §8). Leaks are caught by TestMain's
// goleak check and, for bubble tests, by synctest itself.

// violation is a protocol violation the session must answer with
// GoAway(protocol error) before it closes the connection.
type violation struct {
	name   string
	client bool // the session under test is the client
	// setup sends legal frames after the live stream L is open, before bad.
	setup func(p *rawPeer, live uint32)
	bad   func(p *rawPeer, live uint32) []byte
	want  error // wrapped by every error users see, besides ErrProtocol
	// finished: the peer's FIN on L arrived in setup, so L's reader gets
	// its data and io.EOF rather than the session's error.
	finished bool
	// liveData is what L's reader gets before the error.
	liveData []byte
}

var violations = []violation{
	{
		name: "wrong_version",
		bad:  func(p *rawPeer, l uint32) []byte { return rawHeader(1, rawData, 0, l, 0) },
		want: ErrInvalidVersion,
	},
	{
		name: "version_255_on_ping",
		bad:  func(p *rawPeer, l uint32) []byte { return rawHeader(255, rawPing, rawSYN, 0, 7) },
		want: ErrInvalidVersion,
	},
	{
		name: "unknown_type_4",
		bad:  func(p *rawPeer, l uint32) []byte { return rawHeader(0, 4, 0, 0, 0) },
		want: ErrInvalidType,
	},
	{
		name: "unknown_type_255_announcing_payload",
		bad:  func(p *rawPeer, l uint32) []byte { return rawHeader(0, 255, rawSYN, l, 100) },
		want: ErrInvalidType,
	},
	{
		name: "data_never_opened_peer_parity",
		bad:  func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, l+2, []byte("x")) },
		want: ErrProtocol,
	},
	{
		name: "data_never_opened_our_parity",
		bad:  func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, l+1, []byte("x")) },
		want: ErrProtocol,
	},
	{
		name:   "data_never_opened_our_parity_client",
		client: true,
		bad:    func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, l+1, []byte("x")) },
		want:   ErrProtocol,
	},
	{
		name: "window_update_never_opened",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, 0, l+4, 1000) },
		want: ErrProtocol,
	},
	{
		name: "rst_never_opened",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, rawRST, l+6, 0) },
		want: ErrProtocol,
	},
	{
		name: "syn_wrong_parity",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, rawSYN, l+1, 0) },
		want: ErrProtocol,
	},
	{
		name:   "syn_wrong_parity_client",
		client: true,
		bad:    func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, rawSYN, l+1, 0) },
		want:   ErrProtocol,
	},
	{
		name:     "syn_reusing_live_id",
		bad:      func(p *rawPeer, l uint32) []byte { return rawDataFrame(rawSYN, l, []byte("again")) },
		want:     ErrProtocol,
		liveData: []byte("hello"),
	},
	{
		name: "syn_on_stream_0",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, rawSYN, 0, 0) },
		want: ErrProtocol,
	},
	{
		name: "syn_with_data_on_stream_0",
		bad:  func(p *rawPeer, l uint32) []byte { return rawDataFrame(rawSYN, 0, []byte("x")) },
		want: ErrProtocol,
	},
	{
		name:   "syn_on_stream_0_client",
		client: true,
		bad:    func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, rawSYN, 0, 0) },
		want:   ErrProtocol,
	},
	{
		name: "data_on_stream_0",
		bad:  func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, 0, []byte("x")) },
		want: ErrProtocol,
	},
	{
		name: "window_update_on_stream_0",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, 0, 0, 1) },
		want: ErrProtocol,
	},
	{
		name: "ping_on_a_stream",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawPing, rawSYN, l, 1) },
		want: ErrProtocol,
	},
	{
		name: "goaway_on_a_stream",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawGoAway, 0, l, 0) },
		want: ErrProtocol,
	},
	{
		name: "ping_without_syn_or_ack",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawPing, rawFIN|rawRST, 0, 1) },
		want: ErrProtocol,
	},
	{
		name: "ping_with_only_unknown_flags",
		bad:  func(p *rawPeer, l uint32) []byte { return rawCtrl(rawPing, 0xfff0, 0, 1) },
		want: ErrProtocol,
	},
	{
		// L got "hello" (5 bytes) already: one byte more than the rest of
		// its window is rejected from the header, before the payload.
		name:     "data_beyond_window",
		bad:      func(p *rawPeer, l uint32) []byte { return rawHeader(0, rawData, 0, l, rawInitialWindow-5+1) },
		want:     ErrRecvWindowExceeded,
		liveData: []byte("hello"),
	},
	{
		// The window filled to the byte is legal; one byte more is not.
		name: "data_beyond_filled_window",
		setup: func(p *rawPeer, l uint32) {
			p.send(rawDataFrame(0, l, make([]byte, rawInitialWindow-5)))
		},
		bad:      func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, l, []byte("x")) },
		want:     ErrRecvWindowExceeded,
		liveData: append([]byte("hello"), make([]byte, rawInitialWindow-5)...),
	},
	{
		name:     "syn_with_data_beyond_initial_window",
		bad:      func(p *rawPeer, l uint32) []byte { return rawHeader(0, rawData, rawSYN, l+2, rawInitialWindow+1) },
		want:     ErrRecvWindowExceeded,
		liveData: []byte("hello"),
	},
	{
		name:     "data_length_4GiB",
		bad:      func(p *rawPeer, l uint32) []byte { return rawHeader(0, rawData, 0, l, math.MaxUint32) },
		want:     ErrProtocol,
		liveData: []byte("hello"),
	},
	{
		name:     "data_length_above_max_window",
		bad:      func(p *rawPeer, l uint32) []byte { return rawHeader(0, rawData, 0, l, 16<<20+1) },
		want:     ErrProtocol,
		liveData: []byte("hello"),
	},
	{
		name:     "window_update_overflow",
		bad:      func(p *rawPeer, l uint32) []byte { return rawCtrl(rawWindowUpdate, 0, l, math.MaxUint32-rawInitialWindow+1) },
		want:     ErrProtocol,
		liveData: []byte("hello"),
	},
	{
		name:     "data_after_fin",
		setup:    func(p *rawPeer, l uint32) { p.send(rawDataFrame(rawFIN, l, nil)) },
		bad:      func(p *rawPeer, l uint32) []byte { return rawDataFrame(0, l, []byte("late")) },
		want:     ErrProtocol,
		finished: true,
		liveData: []byte("hello"),
	},
	{
		name:     "data_with_fin_after_fin",
		setup:    func(p *rawPeer, l uint32) { p.send(rawCtrl(rawWindowUpdate, rawFIN, l, 0)) },
		bad:      func(p *rawPeer, l uint32) []byte { return rawDataFrame(rawFIN, l, []byte("late")) },
		want:     ErrProtocol,
		finished: true,
		liveData: []byte("hello"),
	},
}

// TestHostileProtocolViolations plays each violation after a stream L was
// opened with "hello" and accepted: the session must answer with exactly
// GoAway(protocol error) and close, and every call must return an error
// wrapping ErrSessionShutdown, ErrProtocol and the specific sentinel.
func TestHostileProtocolViolations(t *testing.T) {
	for _, v := range violations {
		t.Run(v.name, func(t *testing.T) {
			forEachRawTransport(t, func(t *testing.T, tcp bool) {
				p := newRawPeer(t, rawPeerOptions{sessionIsClient: v.client, tcp: tcp})
				live := p.newID()
				p.send(rawDataFrame(rawSYN, live, []byte("hello")))
				st := p.accept(live)
				p.expect(rawWindowUpdate, rawACK, live, 0)
				if v.setup != nil {
					v.setup(p, live)
				}
				p.send(v.bad(p, live))
				p.expectGoAway(uint32(GoAwayProtocolError))

				<-p.sess.Done()
				checkSessionErr(t, "Session.Err", p.sess.Err(), ErrProtocol, v.want)
				want := v.liveData
				if want == nil {
					want = []byte("hello")
				}
				got, err := readToError(st)
				if !bytes.Equal(got, want) {
					t.Errorf("stream %d read %d bytes before the error; want %d", live, len(got), len(want))
				}
				if v.finished {
					if err != io.EOF {
						t.Errorf("finished stream: Read = %v; want io.EOF after its data", err)
					}
				} else {
					checkSessionErr(t, "Read", err, ErrProtocol, v.want)
				}
				_, err = st.Write([]byte("x"))
				checkSessionErr(t, "Write", err, ErrProtocol, v.want)
				checkAcceptAfterEnd(t, p.sess, ErrProtocol, v.want)
				_, err = p.sess.OpenStream(context.Background())
				checkSessionErr(t, "OpenStream", err, ErrProtocol, v.want)
			})
		})
	}
}

// TestHostileViolationWakesBlockedCalls: calls blocked when the violation
// arrives return at once with the protocol error.
func TestHostileViolationWakesBlockedCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		// Fill our send window so that Write blocks.
		werr := make(chan error, 1)
		go func() {
			_, err := st.Write(make([]byte, rawInitialWindow+1))
			werr <- err
		}()
		got := 0
		for got < rawInitialWindow {
			f := p.expect(rawData, 0, st.StreamID(), min(64<<10, uint32(rawInitialWindow-got)))
			got += len(f.Body)
		}
		rerr := make(chan error, 1)
		go func() {
			_, err := st.Read(make([]byte, 1))
			rerr <- err
		}()
		aerr := make(chan error, 1)
		go func() {
			_, err := p.sess.AcceptStream(context.Background())
			aerr <- err
		}()
		synctest.Wait() // all three are blocked
		start := time.Now()
		p.send(rawHeader(7, rawData, 0, 1, 0))
		p.expectGoAway(uint32(GoAwayProtocolError))
		checkSessionErr(t, "blocked Write", <-werr, ErrInvalidVersion)
		checkSessionErr(t, "blocked Read", <-rerr, ErrInvalidVersion)
		checkSessionErr(t, "blocked AcceptStream", <-aerr, ErrInvalidVersion)
		if d := time.Since(start); d != 0 {
			t.Errorf("blocked calls returned after %v of fake time; want at once", d)
		}
	})
}

// TestHostileUnknownFlagsIgnored: unknown flag bits are ignored and the
// frame is processed by its known flags (spec.md §2.3).
func TestHostileUnknownFlagsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		const unknown = 0xfff0

		// SYN with data.
		p.send(rawDataFrame(rawSYN|unknown, p.newID(), []byte("hello")))
		st := p.accept(1)
		p.expect(rawWindowUpdate, rawACK, 1, 0)
		buf := make([]byte, 16)
		if n, err := st.Read(buf); err != nil || string(buf[:n]) != "hello" {
			t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
		}

		// Ping: answered with exactly ACK and the same opaque value.
		p.send(rawCtrl(rawPing, rawSYN|0x0100, 0, 77))
		p.expect(rawPing, rawACK, 0, 77)

		// Window update: the delta is applied, so 1000 bytes beyond the
		// initial window can be written.
		p.send(rawCtrl(rawWindowUpdate, 0x8000, 1, 1000))
		werr := make(chan error, 1)
		go func() {
			_, err := st.Write(make([]byte, rawInitialWindow+1000))
			werr <- err
		}()
		got := 0
		for got < rawInitialWindow+1000 {
			f, err := p.next()
			if err != nil || f.Type != rawData || f.ID != 1 || f.Flags != 0 {
				t.Fatalf("after %d bytes: got %v, %v; want data on stream 1", got, f, err)
			}
			got += len(f.Body)
		}
		if err := <-werr; err != nil {
			t.Fatalf("Write within the updated window: %v", err)
		}

		// FIN with unknown bits: the reader sees io.EOF.
		p.send(rawDataFrame(rawFIN|0x4000, 1, []byte("!")))
		if got, err := readToError(st); string(got) != "!" || err != io.EOF {
			t.Fatalf("read %q, %v; want \"!\" then io.EOF", got, err)
		}

		// RST with unknown bits resets a second stream.
		st3 := p.openStream()
		p.send(rawCtrl(rawWindowUpdate, rawRST|0x0200, st3.StreamID(), 0))
		if _, err := st3.Read(buf); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Read after RST = %v; want ErrStreamReset", err)
		}
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
		if before := p.sync(); len(before) != 0 {
			t.Fatalf("session sent %v; want nothing", before)
		}
	})
}

// TestHostileSynDataFin: a SYN that carries data and FIN at once is a
// whole request: the stream is delivered with its data, then io.EOF, and
// our direction stays open.
func TestHostileSynDataFin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		p.send(rawDataFrame(rawSYN|rawFIN, 1, []byte("request")))
		st := p.accept(1)
		p.expect(rawWindowUpdate, rawACK, 1, 0)
		if got, err := readToError(st); string(got) != "request" || err != io.EOF {
			t.Fatalf("read %q, %v; want request then io.EOF", got, err)
		}
		if _, err := st.Write([]byte("response")); err != nil {
			t.Fatalf("Write after the peer's FIN: %v", err)
		}
		if f := p.expect(rawData, 0, 1, 8); string(f.Body) != "response" {
			t.Fatalf("peer got %q", f.Body)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		p.expect(rawData, rawFIN, 1, 0)
		if n := p.sess.NumStreams(); n != 0 {
			t.Fatalf("NumStreams = %d after both FINs; want 0", n)
		}
	})
}

// TestHostileHugeLengthAllocatesNothing: a Data header announcing 4 GiB is
// rejected from the header alone, before any payload buffer is allocated.
func TestHostileHugeLengthAllocatesNothing(t *testing.T) {
	for _, syn := range []uint16{0, rawSYN} {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			id := uint32(1)
			if syn == 0 {
				p.openStream()
			}
			before := totalAlloc()
			// Followed by a little payload, which must never be read.
			p.send(append(rawHeader(0, rawData, syn, id, math.MaxUint32), make([]byte, 1000)...))
			p.expectGoAway(uint32(GoAwayProtocolError))
			<-p.sess.Done()
			if d := totalAlloc() - before; d > 1<<20 {
				t.Errorf("allocated %d bytes while rejecting a 4 GiB frame; want (far) less than 1 MiB", d)
			}
			checkSessionErr(t, "Session.Err", p.sess.Err(), ErrProtocol)
		})
	}
}

// TestHostileWindowUpdateOverflowBoundary: a window of exactly 2^32-1 is
// legal; one more byte of credit is a protocol error.
func TestHostileWindowUpdateOverflowBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		p.send(rawCtrl(rawWindowUpdate, 0, st.StreamID(), math.MaxUint32-rawInitialWindow))
		if before := p.sync(); len(before) != 0 || p.sess.Err() != nil {
			t.Fatalf("after a window of 2^32-1: session sent %v, Err = %v; want nothing, nil", before, p.sess.Err())
		}
		p.send(rawCtrl(rawWindowUpdate, 0, st.StreamID(), 1))
		p.expectGoAway(uint32(GoAwayProtocolError))
		<-p.sess.Done()
		checkSessionErr(t, "Session.Err", p.sess.Err(), ErrProtocol)
	})
}

// TestHostileTruncated: the connection ends in the middle of a header or a
// payload. The session ends with io.ErrUnexpectedEOF; a stream cut off
// returns its complete frames and then that error, never io.EOF, and the
// partial payload is never delivered; a stream whose FIN arrived before the
// cut still ends with io.EOF.
func TestHostileTruncated(t *testing.T) {
	cases := []struct {
		name string
		tail func(id uint32) []byte
	}{
		{"eof_at_frame_boundary", func(uint32) []byte { return nil }},
		{"header_cut_short", func(id uint32) []byte { return rawDataFrame(0, id, []byte("more"))[:5] }},
		{"header_cut_after_11_bytes", func(id uint32) []byte { return rawDataFrame(0, id, []byte("more"))[:11] }},
		{"body_cut_short", func(id uint32) []byte {
			return append(rawHeader(0, rawData, 0, id, 100), bytes.Repeat([]byte("P"), 50)...)
		}},
		{"body_cut_before_first_byte", func(id uint32) []byte { return rawHeader(0, rawData, 0, id, 100) }},
		{"syn_body_cut_short", func(id uint32) []byte {
			return append(rawHeader(0, rawData, rawSYN, id+4, 100), bytes.Repeat([]byte("P"), 50)...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachRawTransport(t, func(t *testing.T, tcp bool) {
				p := newRawPeer(t, rawPeerOptions{tcp: tcp})
				p.send(rawDataFrame(rawSYN, 1, []byte("part")))
				cut := p.accept(1)
				p.expect(rawWindowUpdate, rawACK, 1, 0)
				p.send(rawDataFrame(rawSYN|rawFIN, 3, []byte("done")))
				whole := p.accept(3)
				p.expect(rawWindowUpdate, rawACK, 3, 0)

				if tail := c.tail(1); len(tail) > 0 {
					p.send(tail)
				}
				p.conn.Close()
				<-p.sess.Done()
				checkSessionErr(t, "Session.Err", p.sess.Err(), io.ErrUnexpectedEOF)
				if errors.Is(p.sess.Err(), ErrProtocol) {
					t.Errorf("Session.Err = %v; a cut connection is not a protocol error", p.sess.Err())
				}
				got, err := readToError(cut)
				if string(got) != "part" {
					t.Errorf("cut stream read %q; want only the complete frame, \"part\"", got)
				}
				checkSessionErr(t, "Read of the cut stream", err, io.ErrUnexpectedEOF)
				if got, err := readToError(whole); string(got) != "done" || err != io.EOF {
					t.Errorf("finished stream read %q, %v; want \"done\", io.EOF", got, err)
				}
				// A stream whose SYN frame was cut may have reached the
				// backlog; it must not look whole.
				checkAcceptAfterEnd(t, p.sess, io.ErrUnexpectedEOF)
			})
		})
	}
}

// pingFloodCount is how many pings and SYNs the flood tests send. It is the
// full 100,000 under the race detector too: the floods take well under a
// second each.
const pingFloodCount = 100_000

// TestHostilePingFlood: 100,000 pings from a peer that does not read the
// answers. The session stays up, its memory does not grow with the flood,
// and the answers coalesce into one pending slot: when the peer finally
// reads, it gets at most two answers (one may have been gathered before the
// flood), the last for the newest ping.
func TestHostilePingFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{noRead: true})
		heap0 := heapInUse()
		const batch = 1000
		buf := make([]byte, 0, 12*batch)
		for i := 0; i < pingFloodCount; i += batch {
			buf = buf[:0]
			for j := i; j < i+batch; j++ {
				buf = append(buf, rawCtrl(rawPing, rawSYN, 0, uint32(j))...)
			}
			p.send(buf)
		}
		synctest.Wait() // the receive loop has handled every ping
		if grew := int64(heapInUse()) - int64(heap0); grew > 4<<20 {
			t.Errorf("heap grew by %d bytes during the ping flood; want < 4 MiB", grew)
		}
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended during the ping flood: %v", err)
		}
		p.startReader()
		var acks []uint32
		for {
			f, err := p.next()
			if err != nil {
				t.Fatalf("after ping answers %v: %v", acks, err)
			}
			if f.Type != rawPing || f.Flags != rawACK || f.ID != 0 {
				t.Fatalf("session sent %v; want only ping answers", f)
			}
			acks = append(acks, f.Length)
			if f.Length == pingFloodCount-1 {
				break
			}
		}
		if len(acks) > 2 {
			t.Errorf("session answered %d pings (%v); want at most 2: answers must coalesce", len(acks), acks)
		}
		if before := p.sync(); len(before) != 0 {
			t.Fatalf("session sent %v after the answers; want nothing", before)
		}
	})
}

// checkAcceptAfterEnd checks AcceptStream on a session that has ended: it
// returns the session's error, or first a stream still in the backlog,
// which must then read as cut off (no data, an error other than io.EOF).
func checkAcceptAfterEnd(t *testing.T, s *Session, want ...error) {
	t.Helper()
	for range 1000 {
		st, err := s.AcceptStream(context.Background())
		if err != nil {
			checkSessionErr(t, "AcceptStream", err, want...)
			return
		}
		got, err := readToError(st)
		if len(got) != 0 || err == nil || errors.Is(err, io.EOF) {
			t.Errorf("stream %d accepted after the session ended read %q, %v; want no data and an error", st.StreamID(), got, err)
		}
		checkSessionErr(t, "Read of a stream accepted after the end", err, want...)
	}
	t.Fatal("AcceptStream keeps returning streams after the session ended")
}
