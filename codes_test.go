package yamux

import (
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestStreamErrorIs(t *testing.T) {
	e := &StreamError{Code: 7, Remote: true}
	for _, c := range []struct {
		target error
		want   bool
	}{
		{ErrStreamReset, true},
		{&StreamError{Code: 7, Remote: true}, true},
		{&StreamError{Code: 7}, false},
		{&StreamError{Code: 8, Remote: true}, false},
		{ErrSessionShutdown, false},
	} {
		if got := errors.Is(e, c.target); got != c.want {
			t.Errorf("errors.Is(%v, %v) = %v; want %v", e, c.target, got, c.want)
		}
	}
	if got, want := e.Error(), "yamux: stream reset by peer (code 7)"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

// TestResetWithCodeOnTheWire: the code is the RST frame's length, and the
// RST still follows the stream's queued data.
func TestResetWithCodeOnTheWire(t *testing.T) {
	p := newRawPeer(t, rawPeerOptions{})
	st := p.openStream()
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	st.ResetWithCode(0x1004)
	p.expect(rawData, 0, st.StreamID(), 1)
	p.expect(rawWindowUpdate, rawRST, st.StreamID(), 0x1004)
	var se *StreamError
	if _, err := st.Read(make([]byte, 1)); !errors.As(err, &se) || *se != (StreamError{Code: 0x1004}) {
		t.Fatalf("Read after ResetWithCode = %v; want *StreamError{Code: 0x1004}", err)
	}
	st.Reset() // already reset: nothing more is sent
	p.sync()
}

// TestPeerResetCode: a code in a received RST reaches Read and Write as a
// *StreamError with Remote set; an RST with length 0 is ErrStreamReset
// itself, as before codes existed.
func TestPeerResetCode(t *testing.T) {
	p := newRawPeer(t, rawPeerOptions{})
	coded, plain := p.openStream(), p.openStream()
	p.send(rawCtrl(rawWindowUpdate, rawRST, coded.StreamID(), 42))
	p.send(rawCtrl(rawWindowUpdate, rawRST, plain.StreamID(), 0))
	want := &StreamError{Code: 42, Remote: true}
	if _, err := coded.Read(make([]byte, 1)); !errors.Is(err, want) || !errors.Is(err, ErrStreamReset) {
		t.Errorf("Read after RST(42) = %v; want %v, matching ErrStreamReset", err, want)
	}
	if _, err := coded.Write([]byte("x")); !errors.Is(err, want) {
		t.Errorf("Write after RST(42) = %v; want %v", err, want)
	}
	if _, err := plain.Read(make([]byte, 1)); err != ErrStreamReset {
		t.Errorf("Read after RST(0) = %v; want ErrStreamReset itself", err)
	}
}

// TestResetCodeBetweenSessions: both ends of our own sessions, every
// transport.
func TestResetCodeBetweenSessions(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		a.ResetWithCode(9)
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, &StreamError{Code: 9, Remote: true}) {
			t.Fatalf("peer's Read = %v; want the code 9 from the peer", err)
		}
	})
}

// TestCloseWithCode: the code goes out in the final GoAway; the peer ends
// its session with it, its streams see it, and our own Err has it too.
func TestCloseWithCode(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		_, b := streamPair(t, client, server)
		client.CloseWithCode(0x1006)
		readErr := make(chan error, 1)
		go func() { _, err := b.Read(make([]byte, 1)); readErr <- err }()
		select {
		case <-server.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("peer session still up 10s after CloseWithCode")
		}
		var ga *GoAwayError
		if err := server.Err(); !errors.As(err, &ga) || *ga != (GoAwayError{Code: 0x1006, Remote: true}) {
			t.Errorf("peer's Err() = %v; want a remote GoAway with code 0x1006", err)
		}
		if err := <-readErr; !errors.Is(err, &GoAwayError{Code: 0x1006, Remote: true}) || !errors.Is(err, ErrSessionShutdown) {
			t.Errorf("peer's Read = %v; want ErrSessionShutdown with the GoAway", err)
		}
		err := client.Err()
		if !errors.Is(err, ErrLocalClose) || !errors.Is(err, &GoAwayError{Code: 0x1006}) {
			t.Errorf("our Err() = %v; want ErrLocalClose and our GoAway with code 0x1006", err)
		}
	})
}

func TestCloseWithCodeOnTheWire(t *testing.T) {
	p := newRawPeer(t, rawPeerOptions{})
	p.sess.CloseWithCode(77)
	p.expectGoAway(77)
}

// countingMemory is a MemoryManager that records what is held and can
// refuse initial windows, growth, or both.
type countingMemory struct {
	mu             sync.Mutex
	held           int
	reservations   map[uint8]int // granted, by prio
	refuseInitial  bool
	refuseGrowth   bool
	refusedGrowths int
}

var errRefused = errors.New("test: memory refused")

func (m *countingMemory) ReserveMemory(n int, prio uint8) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case prio == memPrioInitial && m.refuseInitial:
		return errRefused
	case prio == memPrioGrowth && m.refuseGrowth:
		m.refusedGrowths++
		return errRefused
	}
	if m.reservations == nil {
		m.reservations = make(map[uint8]int)
	}
	m.reservations[prio]++
	m.held += n
	return nil
}

func (m *countingMemory) ReleaseMemory(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held -= n
	if m.held < 0 {
		panic("released more memory than was reserved")
	}
}

func (m *countingMemory) snapshot() (held, initial, growth, refusedGrowths int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held, m.reservations[memPrioInitial], m.reservations[memPrioGrowth], m.refusedGrowths
}

func memConfig(m *countingMemory) *Config {
	cfg := DefaultConfig()
	cfg.MemoryManager = m
	return cfg
}

// TestMemoryManagerBalanced: every stream's window is reserved at open and
// accept, released when the stream is forgotten, and what open streams
// still hold is released by the time Close returns.
func TestMemoryManagerBalanced(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cm, sm := &countingMemory{}, &countingMemory{}
		client, server := sessionPair(t, tr, memConfig(cm), memConfig(sm))
		for range 3 { // finished streams give their windows back
			a, b := streamPair(t, client, server)
			a.Close()
			b.Close()
		}
		a, b := streamPair(t, client, server) // left open
		a.Write([]byte("hi"))
		b.Read(make([]byte, 2))
		if held, initial, _, _ := cm.snapshot(); initial != 4 || held < int(initialStreamWindow) {
			t.Errorf("client: %d initial reservations, %d bytes held; want 4 and at least one window", initial, held)
		}
		client.Close()
		server.Close()
		for name, m := range map[string]*countingMemory{"client": cm, "server": sm} {
			if held, _, _, _ := m.snapshot(); held != 0 {
				t.Errorf("%s holds %d bytes after Close; want 0", name, held)
			}
		}
	})
}

// TestMemoryManagerRefusesStreams: a refused initial window refuses the
// stream, not the session: the peer's stream is reset, our OpenStream
// fails with ErrReceiveBufferFull wrapping the refusal.
func TestMemoryManagerRefusesStreams(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cm, sm := &countingMemory{refuseInitial: true}, &countingMemory{refuseInitial: true}
		client, server := sessionPair(t, tr, memConfig(cm), nil)
		_, err := client.OpenStream(t.Context())
		if !errors.Is(err, ErrReceiveBufferFull) || !errors.Is(err, errRefused) {
			t.Fatalf("OpenStream = %v; want ErrReceiveBufferFull wrapping the refusal", err)
		}
		client.Close()
		server.Close()

		client, server = sessionPair(t, tr, nil, memConfig(sm))
		st, err := client.OpenStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Read(make([]byte, 1)); err != ErrStreamReset {
			t.Fatalf("Read on a stream the peer's memory manager refused = %v; want ErrStreamReset", err)
		}
		if _, err := client.Ping(t.Context()); err != nil { // the session is still up
			t.Fatalf("Ping after a refused stream: %v", err)
		}
		if n := server.Stats().StreamsRefused; n != 1 {
			t.Errorf("StreamsRefused = %d; want 1", n)
		}
	})
}

// TestMemoryManagerGrowth: auto-tuning asks for every growth at the lower
// priority; refused, the window stays where it is and the transfer still
// completes. Over a 100 ms round trip in fake time, as the auto-tuning
// tests do.
func TestMemoryManagerGrowth(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			c1, c2, wait := delayedPipe(50 * time.Millisecond)
			defer wait()
			m := &countingMemory{refuseGrowth: refuse}
			client, server := sessionsOver(t, c1, c2, nil, memConfig(m))
			a, b := streamPair(t, client, server)
			const total = 16 << 20
			go sendThenClose(a, total)
			if n, err := io.Copy(io.Discard, onlyReader{b}); err != nil || n != total {
				t.Fatalf("copied %d, %v; want %d", n, err, total)
			}
			held, _, growth, refused := m.snapshot()
			w := b.Stats().WindowSize
			switch {
			case refuse && (w != initialStreamWindow || growth != 0 || refused == 0):
				t.Errorf("growth refused: window %d, %d growths granted, %d refused; want %d, 0, some", w, growth, refused, initialStreamWindow)
			case !refuse && (w <= initialStreamWindow || growth == 0):
				t.Errorf("growth allowed: window %d after %d growths; want it grown", w, growth)
			case held < int(w):
				t.Errorf("manager holds %d bytes; want at least the window of %d", held, w)
			}
			client.Close()
			server.Close()
			if held, _, _, _ := m.snapshot(); held != 0 {
				t.Errorf("manager holds %d bytes after Close; want 0", held)
			}
		})
	}
}
