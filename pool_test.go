package yamux

import (
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

// poolRig is a Pool whose every address leads, through a pipeListener, to
// one echoing SessionServer. Create it inside a synctest bubble.
type poolRig struct {
	ln    *pipeListener
	srv   *SessionServer
	pool  *Pool
	dials atomic.Int32
	gate  chan struct{} // when not nil, Dial waits for it to close
}

func newPoolRig(t *testing.T, idle time.Duration) *poolRig {
	t.Helper()
	r := &poolRig{ln: newPipeListener(), srv: &SessionServer{Handler: echoHandler}}
	r.pool = &Pool{
		IdleTimeout: idle,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			r.dials.Add(1)
			if r.gate != nil {
				select {
				case <-r.gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return r.ln.Dial(ctx, addr)
		},
	}
	startServer(t, r.srv, r.ln)
	t.Cleanup(func() { r.pool.Close() }) // runs before the server stops
	return r
}

func (r *poolRig) open(t *testing.T, addr string) *Stream {
	t.Helper()
	st, err := r.pool.OpenStream(context.Background(), addr)
	if err != nil {
		t.Fatalf("OpenStream(%q): %v", addr, err)
	}
	return st
}

func TestPoolReusesSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		a1 := r.open(t, "a")
		if got := roundTrip(t, a1, "one"); got != "one" {
			t.Fatalf("echo = %q", got)
		}
		a2 := r.open(t, "a")
		if a1.Session() != a2.Session() {
			t.Fatal("second stream to the same address on a new session")
		}
		if got := roundTrip(t, a2, "two"); got != "two" {
			t.Fatalf("echo = %q", got)
		}
		b := r.open(t, "b")
		if b.Session() == a1.Session() {
			t.Fatal("two addresses share a session")
		}
		b.Close()
		if n := r.dials.Load(); n != 2 {
			t.Fatalf("dials = %d; want 2", n)
		}
		if n := r.pool.NumSessions(); n != 2 {
			t.Fatalf("NumSessions = %d; want 2", n)
		}
	})
}

func TestPoolRedialsAfterRemoteClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		st := r.open(t, "a")
		roundTrip(t, st, "x")
		old := st.Session()
		for s := range r.srv.Sessions() {
			s.Close()
		}
		<-old.Done()
		st2 := r.open(t, "a")
		if st2.Session() == old {
			t.Fatal("stream opened on the dead session")
		}
		if got := roundTrip(t, st2, "again"); got != "again" {
			t.Fatalf("echo on the new session = %q", got)
		}
		if n := r.dials.Load(); n != 2 {
			t.Fatalf("dials = %d; want 2", n)
		}
	})
}

// TestPoolRedialsAfterGoAway: a GoAway from the remote makes the pool dial
// a new session, while the stream already open on the old one finishes;
// then the old session is closed.
func TestPoolRedialsAfterGoAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		st := r.open(t, "a")
		old := st.Session()
		synctest.Wait() // the server has the session
		for s := range r.srv.Sessions() {
			s.GoAway()
		}
		<-old.Draining()
		st2 := r.open(t, "a")
		if st2.Session() == old {
			t.Fatal("stream opened on the draining session")
		}
		if got := roundTrip(t, st2, "new"); got != "new" {
			t.Fatalf("echo on the new session = %q", got)
		}
		synctest.Wait()
		if old.IsClosed() {
			t.Fatal("old session closed while its stream was open")
		}
		// The pool closes the retired session as soon as this stream
		// finishes, which can happen before CloseWrite has returned: the
		// FIN was written all the same, and CloseWrite must say so.
		if _, err := st.Write([]byte("old")); err != nil {
			t.Fatalf("Write on the draining session: %v", err)
		}
		if err := st.CloseWrite(); err != nil {
			t.Fatalf("CloseWrite on the draining session: %v", err)
		}
		if got, err := io.ReadAll(st); err != nil || string(got) != "old" {
			t.Fatalf("echo on the draining session = %q, %v", got, err)
		}
		<-old.Done() // retired: closed once its stream finished
		if n := r.dials.Load(); n != 2 {
			t.Fatalf("dials = %d; want 2", n)
		}
	})
}

// TestPoolRetriesOnUnusableSession: a session that fails OpenStream for
// good (here: stream IDs used up) is retired and the call succeeds on a
// new one.
func TestPoolRetriesOnUnusableSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		st := r.open(t, "a")
		roundTrip(t, st, "x")
		old := st.Session()
		old.mu.Lock()
		old.nextID = math.MaxUint32 + 1
		old.mu.Unlock()
		st2 := r.open(t, "a")
		if st2.Session() == old {
			t.Fatal("stream on the exhausted session")
		}
		roundTrip(t, st2, "y")
		<-old.Done()
	})
}

func TestPoolSingleDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		r.gate = make(chan struct{})
		const callers = 8
		streams := make(chan *Stream, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := r.pool.OpenStream(context.Background(), "a")
				if err != nil {
					t.Errorf("OpenStream: %v", err)
					return
				}
				streams <- st
			}()
		}
		synctest.Wait() // one caller dials, the others wait for it
		if n := r.dials.Load(); n != 1 {
			t.Fatalf("dials in progress = %d; want 1", n)
		}
		close(r.gate)
		wg.Wait()
		close(streams)
		var sess *Session
		for st := range streams {
			if sess == nil {
				sess = st.Session()
			}
			if st.Session() != sess {
				t.Fatal("concurrent callers got different sessions")
			}
			st.Close()
		}
		if n := r.dials.Load(); n != 1 {
			t.Fatalf("dials = %d; want 1", n)
		}
	})
}

// TestPoolLeaderCanceled: when the caller that dials gives up, a caller
// waiting for the same dial dials itself instead of failing with the
// other's context error.
func TestPoolLeaderCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		r.gate = make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		leader := make(chan error, 1)
		go func() {
			_, err := r.pool.OpenStream(ctx, "a")
			leader <- err
		}()
		synctest.Wait()
		waiter := make(chan error, 1)
		go func() {
			st, err := r.pool.OpenStream(context.Background(), "a")
			if err == nil {
				st.Close()
			}
			waiter <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-leader; !errors.Is(err, context.Canceled) {
			t.Fatalf("leader = %v; want Canceled", err)
		}
		synctest.Wait()
		if n := r.dials.Load(); n != 2 {
			t.Fatalf("dials = %d; want 2 (the waiter took over)", n)
		}
		close(r.gate)
		if err := <-waiter; err != nil {
			t.Fatalf("waiter = %v; want success", err)
		}
	})
}

func TestPoolDialError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("connection refused")
		p := &Pool{Dial: func(context.Context, string) (net.Conn, error) { return nil, boom }}
		defer p.Close()
		if _, err := p.OpenStream(context.Background(), "a"); !errors.Is(err, boom) {
			t.Fatalf("OpenStream = %v; want the dial error", err)
		}
		if _, err := (&Pool{}).OpenStream(context.Background(), "a"); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("OpenStream without Dial = %v; want ErrInvalidConfig", err)
		}
		bad := &Pool{Config: &Config{}, Dial: func(context.Context, string) (net.Conn, error) {
			c1, c2 := net.Pipe()
			c2.Close()
			return c1, nil
		}}
		defer bad.Close()
		if _, err := bad.OpenStream(context.Background(), "a"); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("OpenStream with a bad Config = %v; want ErrInvalidConfig", err)
		}
	})
}

func TestPoolIdleClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 8 * time.Second // the janitor looks every 2s
		r := newPoolRig(t, idle)
		st := r.open(t, "a")
		sess := st.Session()

		// A session with an open stream is never idle.
		time.Sleep(5 * idle)
		synctest.Wait()
		if sess.IsClosed() {
			t.Fatal("session with an open stream closed as idle")
		}
		roundTrip(t, st, "x")
		synctest.Wait()
		start := time.Now()

		time.Sleep(idle - time.Nanosecond)
		synctest.Wait()
		if sess.IsClosed() || r.pool.NumSessions() != 1 {
			t.Fatal("session closed before IdleTimeout")
		}
		<-sess.Done()
		if d := time.Since(start); d < idle || d > idle*5/4 {
			t.Fatalf("idle session closed after %v; want %v..%v", d, idle, idle*5/4)
		}
		synctest.Wait()
		if n := r.pool.NumSessions(); n != 0 {
			t.Fatalf("NumSessions after idle close = %d", n)
		}
		// The next stream dials again.
		if got := roundTrip(t, r.open(t, "a"), "y"); got != "y" {
			t.Fatalf("echo = %q", got)
		}
		if n := r.dials.Load(); n != 2 {
			t.Fatalf("dials = %d; want 2", n)
		}
	})
}

func TestPoolClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPoolRig(t, 0)
		a := r.open(t, "a")
		b := r.open(t, "b")
		synctest.Wait()
		for s := range r.srv.Sessions() {
			s.GoAway()
		}
		<-a.Session().Draining()
		<-b.Session().Draining()
		// b's session is retired, its stream still open; a's is not yet.
		b2 := r.open(t, "b")
		if err := r.pool.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		for _, s := range []*Stream{a, b, b2} {
			if _, err := s.Read(make([]byte, 1)); err == nil {
				t.Fatal("Read on a stream of a closed pool succeeded")
			}
			if !s.Session().IsClosed() {
				t.Fatal("session of a closed pool still open")
			}
		}
		if _, err := r.pool.OpenStream(context.Background(), "a"); !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("OpenStream after Close = %v; want ErrPoolClosed", err)
		}
		r.pool.Close() // idempotent
	})
}
