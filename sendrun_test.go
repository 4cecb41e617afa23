package yamux

import (
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// sendLoopRunning reports whether s has a send loop run going.
func sendLoopRunning(s *Session) bool {
	s.sq.mu.Lock()
	defer s.sq.mu.Unlock()
	return s.sq.run.running
}

// echoOnce sends a 4-byte ping from a to b and back.
func echoOnce(t *testing.T, a, b *Stream) {
	t.Helper()
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

// TestSendLoopEndsWhenIdle: the send loop keeps its goroutine while the
// session sends, ends its run between one and two sendLoopIdle after the
// last batch, and the next frame starts a new run that works.
func TestSendLoopEndsWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.EnableKeepAlive = false
		client, server := bubblePair(t, cfg, cfg)
		synctest.Wait()
		if sendLoopRunning(client) || sendLoopRunning(server) {
			t.Fatal("a new session without streams started a send loop")
		}
		a, b := streamPair(t, client, server)
		echo := func() { t.Helper(); echoOnce(t, a, b) }
		// Busy: one exchange every half interval for ten intervals.
		for range 20 {
			echo()
			time.Sleep(sendLoopIdle / 2)
			synctest.Wait()
			if !sendLoopRunning(client) || !sendLoopRunning(server) {
				t.Fatal("a send loop ended its run while its session sent every half interval")
			}
		}
		time.Sleep(sendLoopIdle / 2) // one interval since the last batch
		synctest.Wait()
		time.Sleep(sendLoopIdle + time.Millisecond) // two intervals and a bit
		synctest.Wait()
		if sendLoopRunning(client) || sendLoopRunning(server) {
			t.Fatal("a send loop still runs two idle intervals after its last batch")
		}
		echo() // new runs carry the frames
		if !sendLoopRunning(client) || !sendLoopRunning(server) {
			t.Fatal("queued frames started no send loop")
		}
	})
}

// TestSendLoopFinalRunWithoutWork: a session closed while its send loop
// is not running still writes its GoAway (the final run is started) and
// closes the connection.
func TestSendLoopFinalRunWithoutWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		synctest.Wait()
		if sendLoopRunning(p.sess) {
			t.Fatal("an idle session has a send loop")
		}
		p.sess.Close()
		f, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != rawGoAway || f.Length != uint32(GoAwayNormal) {
			t.Fatalf("closing idle session sent %v; want GoAway(normal)", f)
		}
		if _, err := p.next(); err == nil {
			t.Fatal("the connection stayed open after Close")
		}
	})
}

// TestSendLoopIdleAdapts: a session whose sends come back soon after its
// send loop's run ended keeps its next run through twice the quiet gap
// (traffic in bursts a second apart does not pay a goroutine start per
// burst), up to maxSendLoopIdle; once quiet for longer than that, the run
// ends within two of it, and the next run has the short interval again.
func TestSendLoopIdleAdapts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.EnableKeepAlive = false
		client, server := bubblePair(t, cfg, cfg)
		a, b := streamPair(t, client, server)
		running := func() bool { return sendLoopRunning(client) || sendLoopRunning(server) }
		const gap = 700 * time.Millisecond
		echoOnce(t, a, b)
		time.Sleep(gap)
		synctest.Wait()
		if running() {
			t.Fatalf("a send loop still runs %v after the last batch; want it ended within %v", gap, 2*sendLoopIdle)
		}
		for i := range 4 { // bursts gap apart: the runs that start now stay
			echoOnce(t, a, b)
			time.Sleep(gap)
			synctest.Wait()
			if !running() {
				t.Fatalf("burst %d: the send loops ended within %v of the last batch, though the previous run was restarted %v after its last batch", i, gap, gap)
			}
		}
		time.Sleep(2*maxSendLoopIdle - gap + time.Millisecond)
		synctest.Wait()
		if sendLoopRunning(client) || sendLoopRunning(server) {
			t.Fatalf("a send loop still runs %v after the last batch", 2*maxSendLoopIdle)
		}
		echoOnce(t, a, b) // quiet for longer than maxSendLoopIdle: short interval again
		time.Sleep(2*sendLoopIdle + time.Millisecond)
		synctest.Wait()
		if sendLoopRunning(client) || sendLoopRunning(server) {
			t.Fatalf("after a long quiet, a send loop still runs %v after the last batch", 2*sendLoopIdle)
		}
	})
}
