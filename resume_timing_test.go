package yamux

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of the resumption layer's timers, in synctest bubbles over
// net.Pipe: fake time makes them exact and fast.

// bubbleNet is a network inside a bubble: a pipeListener under a
// ResumeListener, and client connections that go through a relay that
// can freeze (stop carrying bytes without closing anything) or cut
// (close) them, and a switch that makes dials fail.
type bubbleNet struct {
	pl   *pipeListener
	rl   *ResumeListener
	down atomic.Bool // dials fail

	mu     sync.Mutex
	relays []*bubbleRelay
	wg     sync.WaitGroup
}

// bubbleRelay joins a client pipe and a server pipe.
type bubbleRelay struct {
	client, server net.Conn // the relay's ends
	frozen         atomic.Bool
	kill           chan struct{}
	once           sync.Once
}

func newBubbleNet(t *testing.T, rc *ResumeConfig) *bubbleNet {
	t.Helper()
	n := &bubbleNet{pl: newPipeListener()}
	rl, err := NewResumeListener(n.pl, rc)
	if err != nil {
		t.Fatal(err)
	}
	n.rl = rl
	return n
}

func (n *bubbleNet) dial(ctx context.Context) (net.Conn, error) {
	if n.down.Load() {
		return nil, errors.New("bubbleNet: server unreachable")
	}
	srv, err := n.pl.Dial(ctx, "")
	if err != nil {
		return nil, err
	}
	cli, mine := net.Pipe()
	r := &bubbleRelay{client: mine, server: srv, kill: make(chan struct{})}
	n.mu.Lock()
	n.relays = append(n.relays, r)
	n.wg.Add(2)
	n.mu.Unlock()
	go n.copy(r, r.server, r.client)
	go n.copy(r, r.client, r.server)
	return cli, nil
}

func (n *bubbleNet) copy(r *bubbleRelay, dst, src net.Conn) {
	defer n.wg.Done()
	buf := make([]byte, 16<<10)
	for {
		k, err := src.Read(buf)
		if r.frozen.Load() {
			<-r.kill
			return
		}
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				r.cut()
				return
			}
		}
		if err != nil {
			r.cut()
			return
		}
	}
}

func (r *bubbleRelay) cut() {
	r.once.Do(func() {
		close(r.kill)
		r.client.Close()
		r.server.Close()
	})
}

// last returns the newest relay.
func (n *bubbleNet) last() *bubbleRelay {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.relays[len(n.relays)-1]
}

func (n *bubbleNet) close() {
	n.rl.Close()
	n.mu.Lock()
	rs := n.relays
	n.mu.Unlock()
	for _, r := range rs {
		r.cut()
	}
	n.wg.Wait()
	n.pl.Close()
}

// sessions dials a resumable client session and accepts its server
// session.
func (n *bubbleNet) sessions(t *testing.T, cfg *Config, rc *ResumeConfig) (client, server *Session) {
	t.Helper()
	acc := make(chan *Session, 1)
	go func() {
		c, err := n.rl.Accept()
		if err != nil {
			acc <- nil
			return
		}
		s, _ := Server(c, cfg)
		acc <- s
	}()
	client, err := DialResumable(context.Background(), n.dial, cfg, rc)
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("no server session")
	}
	return client, server
}

// TestResumeTimeoutEnds: the server never comes back. The client redials
// for ResumeTimeout, then its session ends with ErrResumeTimeout; the
// server keeps the detached session for ResumeTimeout, then ends it the
// same way and forgets it. Nothing is left: no goroutine (the bubble
// checks), no buffer, no table entry.
func TestResumeTimeoutEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := &ResumeConfig{ResumeTimeout: 20 * time.Second}
		n := newBubbleNet(t, rc)
		defer n.close()
		client, server := n.sessions(t, nil, rc)
		defer client.Close()
		defer server.Close()
		a, b := streamPair(t, client, server)
		if _, err := a.Write(make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		n.down.Store(true)
		start := time.Now()
		n.last().cut()
		// Writes go on into the replay buffer while reconnecting (within
		// the stream's window: 256 KiB less the 100 KiB not yet credited).
		if _, err := a.Write(make([]byte, 128<<10)); err != nil {
			t.Fatalf("Write while reconnecting: %v", err)
		}
		if _, err := b.Write(make([]byte, 128<<10)); err != nil {
			t.Fatalf("Write while detached: %v", err)
		}
		synctest.Wait()
		if st := client.State(); st != StateReconnecting {
			t.Fatalf("client State() = %v; want reconnecting", st)
		}
		if st := n.rl.Stats(); st.Detached != 1 || st.DetachedBytes == 0 {
			t.Fatalf("server stats %+v: want 1 detached session holding bytes", st)
		}
		<-client.Done()
		if d := time.Since(start); d != 20*time.Second {
			t.Errorf("client ended %v after the cut; want 20s", d)
		}
		if err := client.Err(); !errors.Is(err, ErrResumeTimeout) {
			t.Errorf("client Err() = %v; want ErrResumeTimeout", err)
		}
		<-server.Done()
		if d := time.Since(start); d != 20*time.Second {
			t.Errorf("server ended %v after the cut; want 20s", d)
		}
		if err := server.Err(); !errors.Is(err, ErrResumeTimeout) {
			t.Errorf("server Err() = %v; want ErrResumeTimeout", err)
		}
		if _, err := a.Read(make([]byte, 1)); !errors.Is(err, ErrResumeTimeout) {
			t.Errorf("stream Read = %v; want ErrResumeTimeout", err)
		}
		rs, _ := client.ResumeStats()
		if rs.Attempts < 5 || rs.Reconnects != 0 {
			t.Errorf("client stats %+v: want several attempts, no reconnection", rs)
		}
		client.Close()
		server.Close()
		if rs, _ := client.ResumeStats(); rs.BufferHeld != 0 {
			t.Errorf("client replay buffer holds %d bytes after the end", rs.BufferHeld)
		}
		if rs, _ := server.ResumeStats(); rs.BufferHeld != 0 {
			t.Errorf("server replay buffer holds %d bytes after the end", rs.BufferHeld)
		}
		st := n.rl.Stats()
		if st.Sessions != 0 || st.Detached != 0 || st.DetachedBytes != 0 || st.Expired != 1 {
			t.Errorf("server stats %+v: want nothing left, 1 expired", st)
		}
	})
}

// TestResumeSilentLink: the network stops carrying bytes without closing
// anything (a dead NAT entry, a pulled cable). AckTimeout notices (5s by
// default), the client redials, and a transfer running across it
// completes intact.
func TestResumeSilentLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newBubbleNet(t, nil)
		defer n.close()
		client, server := n.sessions(t, nil, nil)
		defer client.Close()
		defer server.Close()
		a, b := streamPair(t, client, server)
		const size = 8 << 20
		sent := make(chan error, 1)
		go func() {
			err := sendPRNG(a, 3, size)
			a.CloseWrite()
			sent <- err
		}()
		stop := stateLog(client)
		// Freeze the link once the server has read 2 MiB.
		r := &hookReader{r: b, at: 2 << 20, hook: func() {
			n.last().frozen.Store(true)
		}}
		if err := checkPRNG(r, 3, size); err != nil {
			t.Fatal(err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(r.when); d < 5*time.Second || d > 7*time.Second {
			t.Errorf("transfer finished %v after the freeze; want AckTimeout (5s) to 5s+ticks", d)
		}
		log := stop()
		rs, _ := client.ResumeStats()
		if rs.Reconnects != 1 || len(log) != 3 {
			t.Fatalf("client stats %+v, states %v: want one reconnection", rs, log)
		}
		client.Close()
		server.Close()
	})
}

// TestResumeOutlastsWriteTimeout: a reconnection that takes 25s, longer
// than ConnectionWriteTimeout (10s) and than a keepalive round (5s +
// 10s), while a Write waits on a full replay buffer. The write deadline's
// clock stops while reconnecting, and a missed keepalive over a
// resumable connection reconnects instead of ending the session: the
// session survives and the transfer completes.
func TestResumeOutlastsWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.KeepAliveInterval = 5 * time.Second
		rc := &ResumeConfig{ReplayBuffer: 256 << 10}
		n := newBubbleNet(t, rc)
		defer n.close()
		client, server := n.sessions(t, cfg, rc)
		defer client.Close()
		defer server.Close()
		a, b := streamPair(t, client, server)
		synctest.Wait()
		n.down.Store(true)
		n.last().cut()
		go func() {
			time.Sleep(25 * time.Second)
			n.down.Store(false)
		}()
		const size = 4 << 20
		sent := make(chan error, 1)
		go func() {
			err := sendPRNG(a, 9, size)
			a.CloseWrite()
			sent <- err
		}()
		if err := checkPRNG(b, 9, size); err != nil {
			t.Fatal(err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if err := client.Err(); err != nil {
			t.Fatalf("client session ended: %v", err)
		}
		if err := server.Err(); err != nil {
			t.Fatalf("server session ended: %v", err)
		}
		if rs, _ := client.ResumeStats(); rs.Reconnects != 1 {
			t.Fatalf("client stats %+v: want one reconnection", rs)
		}
		client.Close()
		server.Close()
	})
}

// hookReader calls hook once, when at bytes have been read through it.
type hookReader struct {
	r    io.Reader
	at   int64
	n    int64
	hook func()
	when time.Time
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.n < h.at && int64(len(p)) > h.at-h.n {
		p = p[:h.at-h.n]
	}
	k, err := h.r.Read(p)
	h.n += int64(k)
	if h.n == h.at && h.when.IsZero() {
		h.when = time.Now()
		h.hook()
	}
	return k, err
}

// TestResumeMaxDetached: with MaxDetached 1, a second session losing its
// connection pushes out the first one waiting (ErrResumeLimit); closing
// the listener ends the one still waiting. Both are forgotten and counted.
func TestResumeMaxDetached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := &ResumeConfig{MaxDetached: 1}
		n := newBubbleNet(t, rc)
		defer n.close()
		c1, s1 := n.sessions(t, nil, rc)
		defer c1.Close()
		defer s1.Close()
		r1 := n.last()
		c2, s2 := n.sessions(t, nil, rc)
		defer c2.Close()
		defer s2.Close()
		r2 := n.last()
		n.down.Store(true)
		r1.cut()
		synctest.Wait()
		if st := n.rl.Stats(); st.Detached != 1 || st.Sessions != 2 {
			t.Fatalf("server stats %+v: want 1 detached of 2", st)
		}
		r2.cut()
		<-s1.Done()
		if err := s1.Err(); !errors.Is(err, ErrResumeLimit) {
			t.Fatalf("first server session: %v; want ErrResumeLimit", err)
		}
		synctest.Wait()
		if st := n.rl.Stats(); st.Detached != 1 || st.Sessions != 1 || st.Evicted != 1 {
			t.Fatalf("server stats %+v: want 1 detached, 1 session, 1 evicted", st)
		}
		n.rl.Close()
		<-s2.Done()
		if err := s2.Err(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second server session after the listener closed: %v; want net.ErrClosed", err)
		}
		if st := n.rl.Stats(); st.Detached != 0 || st.Sessions != 0 {
			t.Fatalf("server stats %+v: want nothing left", st)
		}
	})
}
