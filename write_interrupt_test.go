package yamux

// interruptWrite's deadline in the past can be overwritten by the
// send loop's own re-arming of its write deadline (writeConn, top of its
// loop), which then leaves the interrupted Write waiting for the next
// quarter of ConnectionWriteTimeout instead of returning at its deadline.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// hookConn blocks the first SetWriteDeadline to a future time made while
// armed, until release is closed: it lets the test put the waiter's
// interrupt between the send loop's take and its re-arm of the deadline,
// a window that exists in real runs (takeCtrl, copying up to 64 KiB into
// the batch buffer).
type hookConn struct {
	net.Conn
	armed   chan struct{} // closed by the test: hook the next future deadline
	hit     chan struct{} // closed when the hook is hit
	release chan struct{} // closed by the test: let it through
	used    atomic.Bool
}

func (c *hookConn) SetWriteDeadline(t time.Time) error {
	select {
	case <-c.armed:
		if t.After(time.Now()) && c.used.CompareAndSwap(false, true) { // only the send loop sets future deadlines
			close(c.hit)
			<-c.release
		}
	default:
	}
	return c.Conn.SetWriteDeadline(t)
}

func TestWriteInterruptSurvivesRearm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c2.Close()
		hc := &hookConn{Conn: c1, armed: make(chan struct{}), hit: make(chan struct{}), release: make(chan struct{})}
		cfg := DefaultConfig()
		cfg.EnableKeepAlive = false // ConnectionWriteTimeout 10 s: quarter 2.5 s
		s, err := Client(hc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c2, make([]byte, 2*headerSize)); err != nil { // the RTT ping and the SYN
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // the send loop's deadline goes stale: its next write re-arms it
		close(hc.armed)

		start := time.Now()
		st.SetWriteDeadline(start.Add(time.Second))
		type res struct {
			n   int
			err error
			at  time.Duration
		}
		done := make(chan res, 1)
		go func() {
			n, err := st.Write(make([]byte, 100<<10))
			done <- res{n, err, time.Since(start)}
		}()
		<-hc.hit                    // the send loop took the frame and is about to re-arm its deadline
		time.Sleep(2 * time.Second) // the Write's deadline passes: it interrupts (deadline in the past)
		synctest.Wait()
		close(hc.release) // the send loop's re-arm now overwrites the interrupt
		r := <-done
		t.Logf("Write = %d, %v after %v", r.n, r.err, r.at)
		if r.err != nil && !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v", r.err)
		}
		// The Write's deadline was at 1 s, and its waiter interrupted the
		// write at once (the hook held only the send loop). It should
		// return as soon as the send loop runs again (2 s here), not a
		// quarter of ConnectionWriteTimeout later.
		if r.at > 2*time.Second {
			t.Fatalf("Write with a 1 s deadline returned after %v: the interrupt was lost", r.at)
		}
	})
}
