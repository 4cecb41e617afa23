package yamux

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// messageRig serves r through a SessionServer over a pipeListener and
// returns a client session to it. Call it inside a synctest bubble.
func messageRig(t *testing.T, r *Router) (*Session, *SessionServer) {
	t.Helper()
	ln := newPipeListener()
	srv := &SessionServer{Handler: r}
	startServer(t, srv, ln)
	c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
	return c, srv
}

// serverSession returns the one session srv serves.
func serverSession(t *testing.T, srv *SessionServer) *Session {
	t.Helper()
	for s := range srv.Sessions() {
		return s
	}
	t.Fatal("the server has no session")
	return nil
}

// inbox is a message handler that queues what it receives.
type inbox chan Message

func (in inbox) handle(m Message) { in <- m }

// noStreamsLeft fails unless both ends have forgotten every stream. Call it
// after synctest.Wait.
func noStreamsLeft(t *testing.T, c *Session, srv *SessionServer) {
	t.Helper()
	if n := c.NumStreams(); n != 0 {
		t.Errorf("client tracks %d streams; want 0", n)
	}
	for s := range srv.Sessions() {
		if n := s.NumStreams(); n != 0 {
			t.Errorf("server tracks %d streams; want 0", n)
		}
	}
}

func TestMessageDeliveredWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in, other := make(inbox, 1), make(inbox, 1)
		r := &Router{}
		r.HandleMessage("", in.handle) // the default channel
		r.HandleMessage("other", other.handle)
		c, srv := messageRig(t, r)
		ctx := context.Background()
		sizes := []int{0, 1, 1000, smallMessage, smallMessage + 1, 300 << 10, defaultMaxMessageSize}
		var want uint64
		for _, ack := range []bool{false, true} {
			send, mode := c.Send, "Send"
			if ack {
				send, mode = c.SendAck, "SendAck"
			}
			for i, n := range sizes {
				data := pattern(i, n)
				if err := send(ctx, "", data); err != nil {
					t.Fatalf("%s(%d bytes) = %v", mode, n, err)
				}
				m := <-in
				want++
				if !bytes.Equal(m.Data, data) || m.Channel != "" || m.Session == nil || m.Session.IsClient() {
					t.Fatalf("%s(%d bytes) delivered %d bytes (equal %v) on %q from %v", mode, n, len(m.Data), bytes.Equal(m.Data, data), m.Channel, m.Session)
				}
			}
			if err := send(ctx, "other", []byte("x")); err != nil {
				t.Fatalf("%s(other) = %v", mode, err)
			}
			if m := <-other; m.Channel != "other" || string(m.Data) != "x" {
				t.Fatalf("channel other got %q on %q", m.Data, m.Channel)
			}
			want++
		}
		synctest.Wait()
		noStreamsLeft(t, c, srv)
		if st := r.Stats(); st != (RouterStats{MessagesDelivered: want}) {
			t.Fatalf("Stats = %+v; want %d delivered and nothing else", st, want)
		}
	})
}

// TestMessageWire pins the bytes of spec.md §10: what a raw opener writes
// and what the Router answers, in both modes.
func TestMessageWire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := make(inbox, 2)
		r := &Router{}
		r.HandleMessage("c", in.handle)
		c, _ := messageRig(t, r)
		for _, flags := range []byte{0, messageFlagAck} {
			st, err := c.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// length 6, "\x00msg/c", flags, length 3, "abc", FIN
			st.Write([]byte("\x06\x00msg/c" + string(flags) + "\x00\x00\x00\x03abc"))
			st.CloseWrite()
			got, err := io.ReadAll(st)
			if err != nil || !bytes.Equal(got, []byte{0, 0}) {
				t.Fatalf("flags %d: answer %x, %v; want 0000 then EOF", flags, got, err)
			}
			if m := <-in; string(m.Data) != "abc" {
				t.Fatalf("flags %d: delivered %q", flags, m.Data)
			}
			st.Close()
		}
	})
}

func TestMessageUnknownChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &Router{}
		r.HandleMessage("known", func(Message) {})
		r.HandleFunc("stream", func(*Stream) {}) // a stream name is not a channel
		c, srv := messageRig(t, r)
		ctx := context.Background()
		for _, ch := range []string{"nope", "", "stream", strings.Repeat("x", maxChannelName)} {
			for _, send := range []func(context.Context, string, []byte) error{c.Send, c.SendAck} {
				if err := send(ctx, ch, []byte("hi")); !errors.Is(err, ErrUnknownChannel) {
					t.Fatalf("Send(%q) = %v; want ErrUnknownChannel", ch, err)
				}
			}
		}
		opened := c.Stats().StreamsOpened
		if err := c.Send(ctx, strings.Repeat("x", maxChannelName+1), nil); !errors.Is(err, ErrInvalidChannel) {
			t.Fatalf("Send(251-byte channel) = %v; want ErrInvalidChannel", err)
		}
		if n := c.Stats().StreamsOpened; n != opened {
			t.Fatal("an invalid channel opened a stream")
		}
		synctest.Wait()
		noStreamsLeft(t, c, srv)
		if st := r.Stats(); st.MessagesDelivered != 0 {
			t.Fatalf("Stats = %+v; want nothing delivered", st)
		}
	})
}

// TestMessageTooLarge: a message over MaxMessageSize is refused from its
// length, with RST, counted, never read; the limit itself passes.
func TestMessageTooLarge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := make(inbox, 1)
		r := &Router{MaxMessageSize: 1000}
		r.HandleMessage("", in.handle)
		c, srv := messageRig(t, r)
		ctx := context.Background()
		if err := c.Send(ctx, "", make([]byte, 1000)); err != nil {
			t.Fatalf("Send(1000 bytes) = %v", err)
		}
		<-in
		before := serverSession(t, srv).Stats().BytesReceived
		for _, send := range []func(context.Context, string, []byte) error{c.Send, c.SendAck} {
			if err := send(ctx, "", make([]byte, 1001)); !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("Send(1001 bytes) = %v; want ErrMessageTooLarge", err)
			}
		}
		// 8 MiB: refused from the header while the sender is still
		// writing; the receiver takes in at most about one window.
		if err := c.Send(ctx, "", make([]byte, 8<<20)); !errors.Is(err, ErrMessageTooLarge) {
			t.Fatalf("Send(8 MiB) = %v; want ErrMessageTooLarge", err)
		}
		synctest.Wait()
		if got := serverSession(t, srv).Stats().BytesReceived - before; got > 1<<20 {
			t.Errorf("the receiver took in %d bytes of refused messages; want at most about a window each", got)
		}
		select {
		case m := <-in:
			t.Fatalf("a refused message of %d bytes was delivered", len(m.Data))
		default:
		}
		if st := r.Stats(); st.MessagesTooLarge != 3 || st.MessagesDelivered != 1 {
			t.Fatalf("Stats = %+v; want 3 too large, 1 delivered", st)
		}
		noStreamsLeft(t, c, srv)
	})
}

// TestMessageLyingSender: a header that claims more bytes than come before
// FIN, or fewer, is refused; nothing is delivered, and Send says so.
func TestMessageLyingSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := make(inbox, 1)
		r := &Router{}
		r.HandleMessage("", in.handle)
		c, srv := messageRig(t, r)
		ctx := context.Background()
		for _, n := range []int{10, 200 << 10} {
			data := pattern(n, n)
			for _, ack := range []bool{false, true} {
				for _, claim := range []uint64{uint64(n) + 10, uint64(n) - 10, 0} {
					err := c.sendMessage(ctx, "", data, ack, claim)
					if !errors.Is(err, ErrMessageRefused) || errors.Is(err, ErrMessageUnconfirmed) {
						t.Fatalf("%d bytes claiming %d (ack %v): Send = %v; want ErrMessageRefused", n, claim, ack, err)
					}
				}
			}
		}
		synctest.Wait()
		select {
		case m := <-in:
			t.Fatalf("a lying message of %d bytes was delivered", len(m.Data))
		default:
		}
		if st := r.Stats(); st.MessagesMalformed != 12 || st.MessagesDelivered != 0 {
			t.Fatalf("Stats = %+v; want 12 malformed, none delivered", st)
		}
		noStreamsLeft(t, c, srv)
	})
}

// TestMessageBadPeers: raw openers that break §10 in other ways.
func TestMessageBadPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := make(inbox, 1)
		r := &Router{PrefaceTimeout: time.Second, MessageTimeout: 5 * time.Second}
		r.HandleMessage("c", in.handle)
		c, srv := messageRig(t, r)
		raw := func(b string) *Stream {
			st, err := c.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st.Write([]byte(b))
			return st
		}
		const name = "\x06\x00msg/c"

		// Unknown flags: refused as malformed, answer then EOF.
		st := raw(name + "\x02\x00\x00\x00\x01a")
		st.CloseWrite()
		if got, err := io.ReadAll(st); err != nil || !bytes.Equal(got, []byte{0, messageMalformed}) {
			t.Fatalf("unknown flags: answer %x, %v; want 0002", got, err)
		}

		// Cut off before the FIN: dropped, not delivered.
		st = raw(name + "\x00\x00\x00\x00\x03abc")
		synctest.Wait()
		st.Reset()

		// A header cut short, and a message that stalls: each is reset
		// by its timeout.
		for _, tc := range []struct {
			b    string
			wait time.Duration
		}{{name + "\x00\x00", time.Second}, {name + "\x00\x00\x00\x00\x05ab", 5 * time.Second}} {
			start := time.Now()
			st = raw(tc.b)
			if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
				t.Fatalf("stalled %q: Read = %v; want ErrStreamReset", tc.b, err)
			}
			if d := time.Since(start); d != tc.wait {
				t.Fatalf("stalled %q: reset after %v; want %v", tc.b, d, tc.wait)
			}
		}
		synctest.Wait()
		select {
		case m := <-in:
			t.Fatalf("delivered %q", m.Data)
		default:
		}
		if st := r.Stats(); st != (RouterStats{MessagesMalformed: 1, MessagesAbandoned: 3}) {
			t.Fatalf("Stats = %+v; want 1 malformed, 3 abandoned", st)
		}
		noStreamsLeft(t, c, srv)
	})
}

// TestSendToNonRouter: a peer that does not speak §10 gives a definite
// error or an unconfirmed one, never success.
func TestSendToNonRouter(t *testing.T) {
	for name, tc := range map[string]struct {
		peer func(st *Stream)
		want error
	}{
		"echo":   {func(st *Stream) { io.Copy(st, st) }, ErrBadStreamPreface},
		"resets": {func(st *Stream) { io.ReadAll(st); st.Reset() }, ErrMessageUnconfirmed},
		"closes": {func(st *Stream) { io.ReadAll(st); st.Close() }, ErrMessageUnconfirmed},
		"§9 only": {func(st *Stream) { io.ReadAll(st); st.Write([]byte{prefaceOK}); st.Close() },
			io.ErrUnexpectedEOF},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server := bubblePair(t, nil, nil)
				go func() {
					st, err := server.AcceptStream(context.Background())
					if err == nil {
						tc.peer(st)
						st.Close()
					}
				}()
				err := client.Send(context.Background(), "c", []byte("hello"))
				if !errors.Is(err, tc.want) {
					t.Fatalf("Send = %v; want %v", err, tc.want)
				}
				synctest.Wait()
			})
		})
	}
}

// TestMessageReceiverBlocks: with handlers stuck and every slot taken, a
// Send waits, unread on the receiver, until its context ends; the
// receiver buffers no more than a window for it, and forgets it once its
// sender gave up.
func TestMessageReceiverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		got := make(inbox, 10)
		r := &Router{MaxConcurrentMessages: 2}
		r.HandleMessage("", func(m Message) {
			got <- m
			<-release
		})
		c, srv := messageRig(t, r)
		timeout := func(d time.Duration) context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			t.Cleanup(cancel)
			return ctx
		}

		// SendAck waits for the handler, which blocks: ctx ends it.
		start := time.Now()
		err := c.SendAck(timeout(time.Second), "", []byte("first"))
		if !errors.Is(err, ErrMessageUnconfirmed) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SendAck to a blocked handler = %v; want unconfirmed, deadline exceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("SendAck returned after %v; want 1s", d)
		}
		<-got // the handler has it all the same (and holds its slot)

		// Send waits only for the message to be received: the second
		// slot.
		if err := c.Send(timeout(time.Second), "", []byte("second")); err != nil {
			t.Fatalf("Send with a free slot = %v", err)
		}
		<-got

		// No slot left: the message waits unread until ctx ends.
		err = c.Send(timeout(time.Second), "", []byte("third"))
		if !errors.Is(err, ErrMessageUnconfirmed) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send with no slot = %v; want unconfirmed, deadline exceeded", err)
		}
		// A message larger than a window cannot even be written whole:
		// no FIN went out, so it is definitely not delivered.
		before := serverSession(t, srv).Stats().BytesReceived
		err = c.Send(timeout(time.Second), "", make([]byte, 1<<20))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrMessageUnconfirmed) {
			t.Fatalf("Send(1 MiB) with no slot = %v; want deadline exceeded, not unconfirmed", err)
		}
		if n := serverSession(t, srv).Stats().BytesReceived - before; n > 300<<10 {
			t.Errorf("the receiver took in %d bytes of a message it cannot read; want at most a window", n)
		}
		// The waiting receivers notice within a probe that their senders
		// gave up.
		time.Sleep(slotProbeInterval)
		synctest.Wait()
		if st := r.Stats(); st != (RouterStats{MessagesDelivered: 2, MessagesAbandoned: 2, MessagesActive: 2}) {
			t.Fatalf("Stats = %+v; want 2 delivered, 2 abandoned, 2 active", st)
		}

		close(release)
		if err := c.SendAck(timeout(time.Second), "", []byte("fourth")); err != nil {
			t.Fatalf("SendAck after the release = %v", err)
		}
		if m := <-got; string(m.Data) != "fourth" {
			t.Fatalf("delivered %q; want fourth", m.Data)
		}
		synctest.Wait()
		noStreamsLeft(t, c, srv)
		if st := r.Stats(); st.MessagesActive != 0 || st.MessagesDelivered != 3 {
			t.Fatalf("Stats = %+v; want 3 delivered, none active", st)
		}
	})
}

// TestMessageReceiverNeverAccepts: a peer whose session accepts no
// streams leaves Send waiting until ctx ends, within one window.
func TestMessageReceiverNeverAccepts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := bubblePair(t, nil, nil)
		for _, tc := range []struct {
			size int
			want []error
		}{
			{100, []error{context.DeadlineExceeded, ErrMessageUnconfirmed}},
			{1 << 20, []error{context.DeadlineExceeded}}, // no FIN sent: not delivered
		} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := client.Send(ctx, "", make([]byte, tc.size))
			cancel()
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("Send(%d bytes) = %v; want %v", tc.size, err, w)
				}
			}
			if len(tc.want) == 1 && errors.Is(err, ErrMessageUnconfirmed) {
				t.Fatalf("Send(%d bytes) = %v; want not unconfirmed", tc.size, err)
			}
		}
		synctest.Wait()
		if n := server.Stats().BytesReceived; n > 300<<10 {
			t.Errorf("the receiver took in %d bytes; want at most about a window", n)
		}
		if n := client.NumStreams(); n != 0 {
			t.Errorf("client tracks %d streams after giving up; want 0", n)
		}
	})
}

// TestMessageFlood: many concurrent messages of mixed sizes and modes,
// within the stream limits, each delivered exactly once and intact.
func TestMessageFlood(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		const senders, each = 32, 25
		var mu sync.Mutex
		seen := map[int]int{}
		var bad []string
		allIn := make(chan struct{})
		r := &Router{}
		r.HandleMessage("flood", func(m Message) {
			id := int(binary.BigEndian.Uint32(m.Data))
			mu.Lock()
			defer mu.Unlock()
			seen[id]++
			if want := floodMessage(id); !bytes.Equal(m.Data, want) {
				bad = append(bad, fmt.Sprintf("message %d: %d bytes, want %d", id, len(m.Data), len(want)))
			}
			if len(seen) == senders*each && seen[id] == 1 {
				close(allIn)
			}
		})
		c1, c2 := tr.pair(t)
		client, server := sessionsOver(t, c1, c2, nil, nil)
		var handlers sync.WaitGroup
		handlers.Go(func() {
			for {
				st, err := server.AcceptStream(context.Background())
				if err != nil {
					return
				}
				handlers.Go(func() {
					r.ServeStream(st)
					st.Close()
				})
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs := make([]error, senders)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				for i := range each {
					id := g*each + i
					send := client.Send
					if id%2 == 1 {
						send = client.SendAck
					}
					if err := send(ctx, "flood", floodMessage(id)); err != nil {
						errs[g] = fmt.Errorf("message %d: %w", id, err)
						return
					}
				}
			})
		}
		wg.Wait()
		err := errors.Join(errs...)
		if err == nil {
			// The handlers of the last plain Sends may still be running.
			select {
			case <-allIn:
			case <-ctx.Done():
				err = errors.New("not every message was handled")
			}
		}
		client.Close()
		server.Close()
		handlers.Wait()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(bad) > 0 {
			t.Fatal(strings.Join(bad, "\n"))
		}
		if len(seen) != senders*each {
			t.Fatalf("%d distinct messages delivered; want %d", len(seen), senders*each)
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("message %d delivered %d times", id, n)
			}
		}
		if st := r.Stats(); st != (RouterStats{MessagesDelivered: senders * each}) {
			t.Fatalf("Stats = %+v; want %d delivered, nothing else", st, senders*each)
		}
	})
}

// floodMessage is message id: its id, then a pattern of a size from 4 B
// to about 100 KiB.
func floodMessage(id int) []byte {
	n := 4 + (id*7919)%(100<<10)
	if id%5 != 0 {
		n %= 2000 // mostly small
		n += 4
	}
	p := pattern(id, n)
	binary.BigEndian.PutUint32(p, uint32(id))
	return p
}

// TestMessageOrder is the ordering statement of Send's doc: a caller that
// waits for each SendAck has its messages handled in order; one that waits
// only for each Send does not, since the handlers run concurrently.
func TestMessageOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		release := make(chan struct{})
		r := &Router{}
		r.HandleMessage("", func(m Message) {
			if string(m.Data) == "slow" {
				<-release
			}
			mu.Lock()
			order = append(order, string(m.Data))
			mu.Unlock()
		})
		c, _ := messageRig(t, r)
		ctx := context.Background()

		var want []string
		for i := range 50 {
			msg := fmt.Sprint(i)
			want = append(want, msg)
			if err := c.SendAck(ctx, "", []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		if !slices.Equal(order, want) {
			t.Fatalf("SendAck one after another handled in order %q; want %q", order, want)
		}
		order = nil
		mu.Unlock()

		// Send returns once the message is received, before its handler
		// ran: a later message overtakes a slow handler.
		if err := c.Send(ctx, "", []byte("slow")); err != nil {
			t.Fatal(err)
		}
		if err := c.SendAck(ctx, "", []byte("fast")); err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(order, []string{"fast", "slow"}) {
			t.Fatalf("handled in order %q; want the later message first", order)
		}
	})
}

// TestMessageSessionEnds: a session that ends under a waiting message
// abandons it, and Send reports the session error.
func TestMessageSessionEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		entered := make(chan struct{})
		r := &Router{MaxConcurrentMessages: 1}
		r.HandleMessage("", func(m Message) {
			entered <- struct{}{}
			<-m.Session.Done()
		})
		c, _ := messageRig(t, r)
		errc := make(chan error, 2)
		go func() { errc <- c.SendAck(context.Background(), "", []byte("held")) }()
		<-entered
		go func() { errc <- c.Send(context.Background(), "", []byte("waits")) }()
		synctest.Wait()
		c.Close()
		for range 2 {
			if err := <-errc; !errors.Is(err, ErrSessionShutdown) || !errors.Is(err, ErrMessageUnconfirmed) {
				t.Fatalf("Send on a closed session = %v; want unconfirmed, session shutdown", err)
			}
		}
		synctest.Wait()
		if st := r.Stats(); st != (RouterStats{MessagesDelivered: 1, MessagesAbandoned: 1}) {
			t.Fatalf("Stats = %+v; want 1 delivered, 1 abandoned", st)
		}
		if err := c.Send(context.Background(), "", nil); !errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrMessageUnconfirmed) {
			t.Fatalf("Send after Close = %v; want session shutdown, not unconfirmed", err)
		}
	})
}

// TestMessageNames: message channels live in a namespace of their own.
func TestMessageNames(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	var r Router
	r.HandleMessage("a", func(Message) {})
	r.HandleMessage("", func(Message) {})
	r.HandleFunc("a", func(*Stream) {}) // a stream name and a channel do not collide
	mustPanic("duplicate channel", func() { r.HandleMessage("a", func(Message) {}) })
	mustPanic("nil handler", func() { r.HandleMessage("b", nil) })
	mustPanic("long channel", func() { r.HandleMessage(strings.Repeat("x", maxChannelName+1), func(Message) {}) })
	mustPanic("reserved stream name", func() { r.Handle(messageNamePrefix+"a", echoHandler) })
	mustPanic("reserved prefix", func() { r.Handle("\x00anything", echoHandler) })
	r.HandleMessage(strings.Repeat("x", maxChannelName), func(Message) {})

	synctest.Test(t, func(t *testing.T) {
		client, _ := bubblePair(t, nil, nil)
		if _, err := client.OpenNamed(context.Background(), messageNamePrefix+"a"); !errors.Is(err, ErrInvalidStreamName) {
			t.Fatalf("OpenNamed(reserved) = %v; want ErrInvalidStreamName", err)
		}
	})
}
