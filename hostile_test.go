package yamux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
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
		name: "window_update_overflow",
		bad: func(p *rawPeer, l uint32) []byte {
			return rawCtrl(rawWindowUpdate, 0, l, math.MaxUint32-rawInitialWindow+1)
		},
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
			f := p.expect(rawData, 0, st.StreamID(), min(uint32(maxDataFrame), uint32(rawInitialWindow-got)))
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
			// Followed by a little payload, which must never be read: the
			// session may close before this write is done.
			go p.write(append(rawHeader(0, rawData, syn, id, math.MaxUint32), make([]byte, 1000)...))
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
		// Answers wait in a bounded queue: the first pings fill it (plus
		// the batch the send loop took from it and is writing, at most a
		// full queue's worth), the rest are dropped and counted.
		dropped := p.sess.Stats().PingsDropped
		answered := pingFloodCount - int(dropped)
		if answered < 1 || answered > 2*maxPendingPingAcks {
			t.Fatalf("%d pings answered, %d dropped; want 1..%d answered", answered, dropped, 2*maxPendingPingAcks)
		}
		// Which pings got answers depends on when the send loop's writes
		// made room in the queue; the answers go out in the order the
		// pings came, each at most once.
		p.startReader()
		last := -1
		for i := 0; i < answered; i++ {
			f, err := p.next()
			if err != nil {
				t.Fatalf("after %d of %d ping answers: %v", i, answered, err)
			}
			if f.Type != rawPing || f.Flags != rawACK || f.ID != 0 || int(f.Length) <= last {
				t.Fatalf("answer %d: session sent %v; want the ACK of a ping after %d", i, f, last)
			}
			last = int(f.Length)
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

// TestHostileSynFlood: 100,000 SYNs that are never accepted. Beyond the
// limit that applies (AcceptBacklog, MaxIncomingStreams or MaxReceiveBuffer)
// each is refused with exactly one RST; the session stays up, its memory is
// bounded by the limit, not by the flood, and the streams within the limit
// can still be accepted.
func TestHostileSynFlood(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Config)
		kept int // streams that wait in the backlog
	}{
		{"accept_queue", func(*Config) {}, defaultMaxIncomingStreams},
		{"max_incoming_streams", func(c *Config) { c.MaxIncomingStreams = 16 }, 16},
		{"max_receive_buffer", func(c *Config) { c.MaxReceiveBuffer = 8 * rawInitialWindow }, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := hostileConfig()
				c.cfg(cfg)
				p := newRawPeer(t, rawPeerOptions{cfg: cfg})
				p.setCountOnly(func(f rawFrame) bool { return f.Flags&rawRST != 0 })
				heap0 := heapInUse()
				const batch = 1000
				buf := make([]byte, 0, 12*batch)
				for i := 0; i < pingFloodCount; i += batch {
					buf = buf[:0]
					for range batch {
						buf = append(buf, rawCtrl(rawWindowUpdate, rawSYN, p.newID(), 0)...)
					}
					p.send(buf)
				}
				refused := pingFloodCount - c.kept
				synctest.Wait() // every SYN has been read and answered or counted
				// A refusal RST waits in a bounded queue: what a flood
				// sends beyond it goes unanswered and is counted, so
				// every refusal is either on the wire or counted.
				unsent := int(p.sess.Stats().RefusalsUnsent)
				p.waitCount(rawWindowUpdate, rawRST, refused-unsent)
				t.Logf("%d refusals sent, %d counted as unsent", refused-unsent, unsent)
				if grew := int64(heapInUse()) - int64(heap0); grew > 16<<20 {
					t.Errorf("heap grew by %d bytes during the SYN flood; want < 16 MiB", grew)
				}
				if err := p.sess.Err(); err != nil {
					t.Fatalf("session ended during the SYN flood: %v", err)
				}
				if got := p.sess.Stats().StreamsRefused; got != uint64(refused) {
					t.Errorf("Stats().StreamsRefused = %d; want %d", got, refused)
				}
				if n := p.sess.NumStreams(); n != c.kept {
					t.Errorf("NumStreams = %d; want %d", n, c.kept)
				}
				p.setCountOnly(nil)
				// The kept streams are the first ones, in order.
				for i := range c.kept {
					id := uint32(2*i + 1)
					st := p.accept(id)
					p.expect(rawWindowUpdate, rawACK, id, 0)
					st.Reset()
					p.expect(rawWindowUpdate, rawRST, id, 0)
				}
				if before := p.sync(); len(before) != 0 {
					t.Fatalf("session sent %v; want nothing more", before)
				}
				synctest.Wait() // the barrier stream's reset has been applied
				if n := p.sess.NumStreams(); n != 0 {
					t.Errorf("NumStreams = %d after resetting everything; want 0", n)
				}
				// Every limit was given back: as many streams as before
				// fit again.
				for range c.kept {
					id := p.newID()
					p.send(rawCtrl(rawWindowUpdate, rawSYN, id, 0))
					p.accept(id)
					p.expect(rawWindowUpdate, rawACK, id, 0)
				}
			})
		})
	}
}

// TestHostileRstFlood: 10,000 RSTs. Repeated RSTs for one stream reset it
// once and are then dropped without an answer; SYN+RST pairs leave no
// stream behind and no accepted stream reads as complete.
func TestHostileRstFlood(t *testing.T) {
	const n = 10_000
	t.Run("repeated_rst", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			st := p.openStream()
			heap0 := heapInUse()
			buf := make([]byte, 0, 12*n)
			for range n {
				buf = append(buf, rawCtrl(rawWindowUpdate, rawRST, st.StreamID(), 0)...)
			}
			p.send(buf)
			before := p.sync()
			if len(before) != 0 {
				t.Fatalf("session answered RSTs with %d frames, first %v; want none", len(before), before[0])
			}
			if grew := int64(heapInUse()) - int64(heap0); grew > 4<<20 {
				t.Errorf("heap grew by %d bytes; want < 4 MiB", grew)
			}
			if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
				t.Errorf("Read = %v; want ErrStreamReset", err)
			}
			if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
				t.Errorf("Write = %v; want ErrStreamReset", err)
			}
			if err := p.sess.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
		})
	})
	t.Run("syn_rst_pairs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			p.setCountOnly(func(f rawFrame) bool { return f.Flags&rawRST != 0 })
			heap0 := heapInUse()
			var ids []uint32
			buf := make([]byte, 0, 41*n)
			for range n {
				id := p.newID()
				ids = append(ids, id)
				buf = append(buf, rawDataFrame(rawSYN, id, []byte("x"))...)
				buf = append(buf, rawCtrl(rawWindowUpdate, rawRST, id, 0)...)
			}
			p.send(buf)
			// The first MaxIncomingStreams streams wait, dead, in the
			// accept queue; the queue then being full, the rest are
			// refused.
			synctest.Wait() // every frame has been read and answered or counted
			// Refusals beyond the bounded queue are counted, not sent.
			p.waitCount(rawWindowUpdate, rawRST, n-defaultMaxIncomingStreams-int(p.sess.Stats().RefusalsUnsent))
			if grew := int64(heapInUse()) - int64(heap0); grew > 8<<20 {
				t.Errorf("heap grew by %d bytes; want < 8 MiB", grew)
			}
			if n := p.sess.NumStreams(); n != 0 {
				t.Errorf("NumStreams = %d; want 0: every stream was reset", n)
			}
			for _, id := range ids[:defaultMaxIncomingStreams] {
				st := p.accept(id)
				got, err := readToError(st)
				if len(got) != 0 || !errors.Is(err, ErrStreamReset) {
					t.Fatalf("stream %d: read %q, %v; want nothing and ErrStreamReset", id, got, err)
				}
			}
			p.setCountOnly(nil)
			if before := p.sync(); len(before) != 0 {
				t.Fatalf("session sent %v; want nothing (no ACK for reset streams)", before)
			}
			if err := p.sess.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
		})
	})
}

// TestHostileSynAfterGoAway: after our GoAway the peer's SYNs are refused
// with RST (their data discarded), our OpenStream fails with
// ErrLocalGoAway, and a stream opened before carries on.
func TestHostileSynAfterGoAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		old := p.openStream()
		gerr := make(chan error, 1)
		go func() { gerr <- p.sess.GoAway() }()
		p.expect(rawGoAway, 0, 0, uint32(GoAwayNormal))
		if err := <-gerr; err != nil {
			t.Fatalf("GoAway: %v", err)
		}
		p.send(rawDataFrame(rawSYN, 3, []byte("refused")))
		p.expect(rawWindowUpdate, rawRST, 3, 0)
		p.send(rawCtrl(rawWindowUpdate, rawSYN, 5, 0))
		p.expect(rawWindowUpdate, rawRST, 5, 0)
		// Late frames for the refused streams are dropped silently.
		p.send(rawDataFrame(rawFIN, 3, []byte("late")))
		if _, err := p.sess.OpenStream(context.Background()); !errors.Is(err, ErrLocalGoAway) {
			t.Errorf("OpenStream after GoAway = %v; want ErrLocalGoAway", err)
		}
		p.send(rawDataFrame(rawFIN, old.StreamID(), []byte("still here")))
		if got, err := readToError(old); string(got) != "still here" || err != io.EOF {
			t.Errorf("old stream read %q, %v; want \"still here\", io.EOF", got, err)
		}
		if _, err := old.Write([]byte("bye")); err != nil {
			t.Errorf("old stream Write: %v", err)
		}
		p.expect(rawData, 0, old.StreamID(), 3)
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
		if got := p.sess.Stats().StreamsRefused; got != 2 {
			t.Errorf("Stats().StreamsRefused = %d; want 2", got)
		}
	})
}

// TestHostileRemoteGoAway: a GoAway with an error code ends the session at
// once with a *GoAwayError (Remote, the code as sent, unknown codes too),
// and we send no GoAway back. GoAway(normal) only stops new streams.
func TestHostileRemoteGoAway(t *testing.T) {
	for _, code := range []GoAwayCode{GoAwayProtocolError, GoAwayInternalError, 0xdeadbeef} {
		t.Run(code.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newRawPeer(t, rawPeerOptions{})
				st := p.openStream()
				p.send(rawCtrl(rawGoAway, 0, 0, uint32(code)))
				p.expectEOF()
				<-p.sess.Done()
				err := p.sess.Err()
				checkSessionErr(t, "Session.Err", err, ErrRemoteGoAway, &GoAwayError{Code: code, Remote: true})
				var ga *GoAwayError
				if !errors.As(err, &ga) || ga.Code != code || !ga.Remote {
					t.Fatalf("errors.As(%v) = %+v; want Code %v, Remote", err, ga, code)
				}
				_, err = st.Read(make([]byte, 1))
				checkSessionErr(t, "Read", err, &GoAwayError{Code: code, Remote: true})
			})
		})
	}
	t.Run("normal", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			st := p.openStream()
			p.send(rawCtrl(rawGoAway, 0, 0, 0))
			if before := p.sync(); len(before) != 0 {
				t.Fatalf("session answered GoAway(normal) with %v", before)
			}
			_, err := p.sess.OpenStream(context.Background())
			if !errors.Is(err, ErrRemoteGoAway) {
				t.Errorf("OpenStream after remote GoAway = %v; want ErrRemoteGoAway", err)
			}
			if _, err := st.Write([]byte("ok")); err != nil {
				t.Errorf("Write on an old stream: %v", err)
			}
			p.expect(rawData, 0, st.StreamID(), 2)
			if err := p.sess.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
		})
	})
}

// TestHostileSlowloris: a peer that stops reading. Our writes make no
// progress, so after ConnectionWriteTimeout the session ends with
// ErrConnectionWriteTimeout; and Close returns within closeFlushLimit
// while a write is stuck.
func TestHostileSlowloris(t *testing.T) {
	const timeout = 10 * time.Second
	cfg := func() *Config {
		c := hostileConfig()
		c.ConnectionWriteTimeout = timeout
		return c
	}
	t.Run("never_reads", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			p := newRawPeer(t, rawPeerOptions{cfg: cfg(), sessionIsClient: true, noRead: true})
			// Not even the opening ping can be written: OpenStream only
			// queues its SYN, and the first Write waits behind it.
			st, err := p.sess.OpenStream(context.Background())
			if err != nil {
				t.Fatalf("OpenStream: %v", err)
			}
			_, err = st.Write([]byte("x"))
			checkSessionErr(t, "Write", err, ErrConnectionWriteTimeout)
			if d := time.Since(start); d != timeout {
				t.Errorf("Write failed after %v; want ConnectionWriteTimeout (%v)", d, timeout)
			}
			checkSessionErr(t, "Session.Err", p.sess.Err(), ErrConnectionWriteTimeout)
			start = time.Now()
			p.sess.Close()
			if d := time.Since(start); d != 0 {
				t.Errorf("Close of the timed-out session took %v; want at once", d)
			}
		})
	})
	t.Run("stops_reading", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{cfg: cfg(), sessionIsClient: true, noRead: true})
			type opened struct {
				st  *Stream
				err error
			}
			oc := make(chan opened, 1)
			go func() {
				st, err := p.sess.OpenStream(context.Background())
				oc <- opened{st, err}
			}()
			if f := p.readDirect(); f.Type != rawPing || f.Flags != rawSYN {
				t.Fatalf("first frame %v; want the opening ping", f)
			}
			if f := p.readDirect(); f.Type != rawWindowUpdate || f.Flags != rawSYN || f.ID != 1 {
				t.Fatalf("second frame %v; want the SYN of stream 1", f)
			}
			o := <-oc
			if o.err != nil {
				t.Fatalf("OpenStream: %v", o.err)
			}
			// The peer reads nothing more.
			start := time.Now()
			n, err := o.st.Write(make([]byte, 1<<20))
			checkSessionErr(t, "Write", err, ErrConnectionWriteTimeout)
			if n != 0 {
				t.Errorf("Write reported %d bytes written; the peer read none", n)
			}
			if d := time.Since(start); d != timeout {
				t.Errorf("Write failed after %v; want %v", d, timeout)
			}
		})
	})
	t.Run("close_while_write_stuck", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{cfg: cfg(), sessionIsClient: true, noRead: true})
			st, err := p.sess.OpenStream(context.Background())
			if err != nil {
				t.Fatalf("OpenStream: %v", err)
			}
			oerr := make(chan error, 1)
			go func() {
				_, err := st.Write([]byte("x"))
				oerr <- err
			}()
			time.Sleep(time.Second) // the Write is stuck behind the ping and the SYN
			start := time.Now()
			p.sess.Close()
			if d := time.Since(start); d > closeFlushLimit {
				t.Errorf("Close took %v; want at most %v", d, closeFlushLimit)
			}
			// The blocked call reports the session's cause (the doc of
			// ErrSessionShutdown), not its frame's failed write.
			checkSessionErr(t, "Write", <-oerr, ErrLocalClose)
			checkSessionErr(t, "Session.Err", p.sess.Err(), ErrLocalClose)
		})
	})
}

// TestHostileOneByteAtATime: a peer that writes, and reads, one byte at a
// time. Every frame is reassembled and answered as usual.
func TestHostileOneByteAtATime(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		p := newRawPeer(t, rawPeerOptions{tcp: tcp, readByByte: true})
		if c, ok := p.conn.(*net.TCPConn); ok {
			c.SetNoDelay(true)
		}
		var script []byte
		script = append(script, rawDataFrame(rawSYN, 1, []byte("hello "))...)
		script = append(script, rawCtrl(rawPing, rawSYN, 0, 42)...)
		script = append(script, rawDataFrame(0, 1, []byte("world"))...)
		script = append(script, rawCtrl(rawWindowUpdate, 0, 1, 4096)...)
		script = append(script, rawDataFrame(rawFIN, 1, nil)...)
		for i := range script {
			p.send(script[i : i+1])
		}
		st := p.accept(1)
		if got, err := readToError(st); string(got) != "hello world" || err != io.EOF {
			t.Fatalf("read %q, %v; want \"hello world\", io.EOF", got, err)
		}
		// The ACK and the ping answer may come in either order.
		a, b := p.expectAny(), p.expectAny()
		if a.Type == rawPing {
			a, b = b, a
		}
		if !a.is(rawWindowUpdate, rawACK, 1, 0) || !b.is(rawPing, rawACK, 0, 42) {
			t.Fatalf("session sent %v and %v; want the ACK of stream 1 and the answer to ping 42", a, b)
		}
		// The window update was applied: the initial window and 4096
		// bytes more can be written, and arrive whole.
		data := make([]byte, rawInitialWindow+4096)
		for i := range data {
			data[i] = byte(i * 7)
		}
		werr := make(chan error, 1)
		go func() {
			_, err := st.Write(data)
			if err == nil {
				err = st.Close()
			}
			werr <- err
		}()
		var got []byte
		for {
			f := p.expectAny()
			if f.Type != rawData || f.ID != 1 {
				t.Fatalf("session sent %v; want data on stream 1", f)
			}
			got = append(got, f.Body...)
			if f.Flags == rawFIN {
				break
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("peer got %d bytes differing from the %d written", len(got), len(data))
		}
	})
}

// TestHostileLateFramesForForgottenStream: frames still in flight for a
// stream we reset (data, window updates, FIN, RST) are dropped silently,
// their payload discarded; the session neither answers nor ends.
func TestHostileLateFramesForForgottenStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		id := st.StreamID()
		st.Reset()
		p.expect(rawWindowUpdate, rawRST, id, 0)
		p.send(
			rawDataFrame(0, id, make([]byte, 100_000)),
			rawCtrl(rawWindowUpdate, 0, id, 5000),
			rawDataFrame(rawFIN, id, []byte("late")),
			rawCtrl(rawWindowUpdate, rawRST, id, 0),
		)
		if before := p.sync(); len(before) != 0 {
			t.Fatalf("session answered late frames with %v; want nothing", before)
		}
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
	})
}

// TestHostileSynBelowLastID: a SYN for a lower ID of the peer's parity that
// is not live is accepted as a new stream (spec.md §3.2: SYNs may overtake
// each other).
func TestHostileSynBelowLastID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		p.send(rawDataFrame(rawSYN, 5, []byte("five")))
		p.send(rawDataFrame(rawSYN|rawFIN, 3, []byte("three")))
		for _, want := range []struct {
			id   uint32
			data string
		}{{5, "five"}, {3, "three"}} {
			st := p.accept(want.id)
			p.expect(rawWindowUpdate, rawACK, want.id, 0)
			buf := make([]byte, 16)
			if n, err := st.Read(buf); err != nil || string(buf[:n]) != want.data {
				t.Fatalf("stream %d: Read = %q, %v; want %q", want.id, buf[:n], err, want.data)
			}
		}
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended: %v", err)
		}
	})
}

// TestHostileMutualRefusalFlood: two sessions that each open streams as
// fast as 400 goroutines can while the other refuses all but one
// (MaxIncomingStreams 1, never accepted). Both receive loops then queue RSTs
// while both send loops write to an unbuffered pipe: neither may end up
// waiting for the other (which would surface as ErrConnectionWriteTimeout).
func TestHostileMutualRefusalFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		cfg.MaxIncomingStreams = 1
		c1, c2 := net.Pipe()
		a, err := Client(c1, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := Server(c2, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		const want = 20_000
		var refused atomic.Int64
		var wg sync.WaitGroup
		for _, s := range []*Session{a, b} {
			for range 400 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for refused.Load() < want && !s.IsClosed() {
						st, err := s.OpenStream(context.Background())
						if err != nil {
							return
						}
						if _, err := st.Read(make([]byte, 1)); errors.Is(err, ErrStreamReset) {
							refused.Add(1)
						}
						st.Close()
					}
				}()
			}
		}
		wg.Wait()
		if a.Err() != nil || b.Err() != nil {
			t.Fatalf("after %d refusals: client %v; server %v", refused.Load(), a.Err(), b.Err())
		}
		if got := a.Stats().StreamsRefused + b.Stats().StreamsRefused; got < want {
			t.Errorf("StreamsRefused adds up to %d; want at least %d", got, want)
		}
	})
}

// TestHostileSecondFinIgnored: spec.md §3.3 and §8: "A second FIN (with no
// data) is ignored: some peers send one", whether the first came on a Data
// or a WindowUpdate frame.
func TestHostileSecondFinIgnored(t *testing.T) {
	for _, first := range []uint8{rawData, rawWindowUpdate} {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			st := p.openStream()
			p.send(rawCtrl(first, rawFIN, st.StreamID(), 0))
			p.send(rawDataFrame(rawFIN, st.StreamID(), nil))
			if before := p.sync(); len(before) != 0 || p.sess.Err() != nil {
				t.Fatalf("second FIN (first on type %d): session sent %v, Err = %v; want nothing, nil", first, before, p.sess.Err())
			}
			if _, err := st.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("Read = %v; want io.EOF", err)
			}
		})
	}
}

// TestHostileRstOnEmptyDataAfterFin: RST carried by an empty Data frame after the
// peer's FIN (rust-yamux sends RST on Data frames) must reset the stream
// (spec.md §3.4), as the same RST on a WindowUpdate does, not end the
// session as data after FIN.
func TestHostileRstOnEmptyDataAfterFin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		p.send(rawDataFrame(rawFIN, st.StreamID(), []byte("all")))
		p.send(rawDataFrame(rawRST, st.StreamID(), nil))
		if before := p.sync(); len(before) != 0 || p.sess.Err() != nil {
			t.Fatalf("session sent %v, Err = %v; want nothing, nil", before, p.sess.Err())
		}
		if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Write after RST = %v; want ErrStreamReset", err)
		}
		// The peer's direction was complete before the RST: it stays readable.
		if got, err := readToError(st); string(got) != "all" || err != io.EOF {
			t.Fatalf("read %q, %v; want \"all\", io.EOF", got, err)
		}
	})
}

// ignoredFrames are frames that harm nothing: RST, window updates and Data
// for a stream the session does not track (never opened, already
// forgotten, stream 0). They are dropped (a payload skipped) and counted,
// and never end the session (spec.md §8).
var ignoredFrames = []struct {
	name   string
	client bool
	bad    func(live uint32) []byte
}{
	{"data_never_opened_peer_parity", false, func(l uint32) []byte { return rawDataFrame(0, l+2, []byte("x")) }},
	{"data_never_opened_our_parity", false, func(l uint32) []byte { return rawDataFrame(0, l+1, []byte("x")) }},
	{"data_never_opened_our_parity_client", true, func(l uint32) []byte { return rawDataFrame(0, l+1, []byte("x")) }},
	{"data_with_fin_never_opened", false, func(l uint32) []byte { return rawDataFrame(rawFIN, l+2, []byte("xyz")) }},
	{"window_update_never_opened", false, func(l uint32) []byte { return rawCtrl(rawWindowUpdate, 0, l+4, 1000) }},
	{"rst_never_opened", false, func(l uint32) []byte { return rawCtrl(rawWindowUpdate, rawRST, l+6, 0) }},
	{"rst_on_data_never_opened", false, func(l uint32) []byte { return rawCtrl(rawData, rawRST, l+8, 0) }},
	{"data_on_stream_0", false, func(uint32) []byte { return rawDataFrame(0, 0, []byte("x")) }},
	{"window_update_on_stream_0", false, func(uint32) []byte { return rawCtrl(rawWindowUpdate, 0, 0, 1) }},
	{"rst_on_stream_0", false, func(uint32) []byte { return rawCtrl(rawWindowUpdate, rawRST, 0, 0) }},
}

// TestHostileIgnoredFrames: each harmless frame, sent after a live stream
// was opened, is counted and changes nothing: the live stream still moves
// data both ways, the session answers pings and opens new streams.
func TestHostileIgnoredFrames(t *testing.T) {
	for _, c := range ignoredFrames {
		t.Run(c.name, func(t *testing.T) {
			forEachRawTransport(t, func(t *testing.T, tcp bool) {
				p := newRawPeer(t, rawPeerOptions{sessionIsClient: c.client, tcp: tcp})
				live := p.newID()
				p.send(rawDataFrame(rawSYN, live, []byte("hello")))
				st := p.accept(live)
				p.expect(rawWindowUpdate, rawACK, live, 0)
				p.send(c.bad(live))
				p.send(rawDataFrame(rawFIN, live, []byte(" world")))
				if got, err := io.ReadAll(st); err != nil || string(got) != "hello world" {
					t.Fatalf("live stream read %q, %v; want \"hello world\"", got, err)
				}
				if before := p.sync(); len(before) != 0 {
					t.Fatalf("session answered the ignored frame with %v", before)
				}
				if err := p.sess.Err(); err != nil {
					t.Fatalf("session ended: %v", err)
				}
				if n := p.sess.Stats().FramesIgnored; n != 1 {
					t.Fatalf("Stats().FramesIgnored = %d; want 1", n)
				}
				if _, err := st.Write([]byte("back")); err != nil {
					t.Fatalf("Write on the live stream: %v", err)
				}
				p.expect(rawData, 0, live, 4)
			})
		})
	}
}

// TestHostileStrayFrameStorm: 5,000 SYN+data+RST triples, then 5,000 RSTs
// for IDs never opened and 100 RSTs on stream 0, while a live stream is
// open: the session survives, the table drains to the live stream, pings
// are answered and new streams work.
func TestHostileStrayFrameStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		live := p.openStream()
		p.setCountOnly(func(f rawFrame) bool { return f.Flags&rawRST != 0 })
		var buf []byte
		for range 5000 {
			id := p.newID()
			buf = append(buf, rawDataFrame(rawSYN, id, []byte("x"))...)
			buf = append(buf, rawCtrl(rawWindowUpdate, rawRST, id, 0)...)
		}
		for i := range 5000 {
			buf = append(buf, rawCtrl(rawWindowUpdate, rawRST, uint32(1_000_001+2*i), 0)...)
		}
		for range 100 {
			buf = append(buf, rawCtrl(rawWindowUpdate, rawRST, 0, 0)...)
		}
		p.send(buf)
		synctest.Wait()
		if err := p.sess.Err(); err != nil {
			t.Fatalf("session ended by the storm: %v", err)
		}
		// The accept queue holds the first MaxIncomingStreams streams,
		// reset; the rest were refused, so their RSTs name forgotten
		// streams too.
		refused := 5000 - defaultMaxIncomingStreams
		if n := p.sess.Stats().FramesIgnored; n != uint64(5100+refused) {
			t.Errorf("Stats().FramesIgnored = %d; want %d", n, 5100+refused)
		}
		if n := p.sess.NumStreams(); n != 1 {
			t.Errorf("NumStreams = %d after the storm; want 1, the live stream", n)
		}
		p.setCountOnly(nil)
		for range defaultMaxIncomingStreams { // drain the backlog of reset streams
			st, err := p.sess.AcceptStream(context.Background())
			if err != nil {
				t.Fatalf("AcceptStream: %v", err)
			}
			if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
				t.Fatalf("backlog stream %d: Read = %v; want ErrStreamReset", st.StreamID(), err)
			}
		}
		p.send(rawCtrl(rawPing, rawSYN, 0, 42))
		p.expect(rawPing, rawACK, 0, 42)
		if _, err := live.Write([]byte("alive")); err != nil {
			t.Fatalf("Write on the live stream: %v", err)
		}
		p.expect(rawData, 0, live.StreamID(), 5)
		p.openStream() // new streams work
	})
}

// TestHostileBurstWithoutWaitingForACKs: a peer that opens 1,000 streams at
// once without waiting for ACKs (js-libp2p's yamux does not limit its
// un-ACKed streams) gets every one accepted while the application's accept
// loop runs: within MaxIncomingStreams a burst is queued, not reset.
func TestHostileBurstWithoutWaitingForACKs(t *testing.T) {
	forEachRawTransport(t, func(t *testing.T, tcp bool) {
		p := newRawPeer(t, rawPeerOptions{tcp: tcp})
		p.setCountOnly(func(f rawFrame) bool { return f.Type == rawWindowUpdate && f.Flags&(rawACK|rawRST) != 0 })
		const n = 1000
		var buf []byte
		for range n {
			buf = append(buf, rawDataFrame(rawSYN, p.newID(), []byte("x"))...)
		}
		accepted := make(chan int, 1)
		go func() {
			got := 0
			for got < n {
				st, err := p.sess.AcceptStream(context.Background())
				if err != nil {
					break
				}
				got++
				go func() { st.Read(make([]byte, 1)); st.Close() }()
			}
			accepted <- got
		}()
		p.send(buf)
		if got := <-accepted; got != n {
			t.Fatalf("accepted %d of %d streams", got, n)
		}
		p.waitCount(rawWindowUpdate, rawACK, n)
		if s := p.sess.Stats(); s.StreamsRefused != 0 || p.count(rawWindowUpdate, rawRST) != 0 {
			t.Fatalf("%d streams refused, %d RSTs; want none", s.StreamsRefused, p.count(rawWindowUpdate, rawRST))
		}
	})
}
