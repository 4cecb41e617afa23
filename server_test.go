package yamux

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener is an in-memory net.Listener whose Dial hands out net.Pipe
// ends: with it a SessionServer runs inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return sessionAddr{} }

// Dial returns the client end of a new pipe once the server end has been
// accepted. Its signature fits Pool.Dial.
func (l *pipeListener) Dial(ctx context.Context, _ string) (net.Conn, error) {
	c1, c2 := net.Pipe()
	select {
	case l.conns <- c2:
		return c1, nil
	case <-l.done:
		err := net.ErrClosed
		c1.Close()
		c2.Close()
		return nil, err
	case <-ctx.Done():
		c1.Close()
		c2.Close()
		return nil, ctx.Err()
	}
}

// echoHandler writes back everything it reads, then returns.
var echoHandler = StreamHandlerFunc(func(st *Stream) { io.Copy(st, st) })

// startServer runs srv.Serve(ln) on a goroutine. The returned function
// closes the server and returns Serve's error; it also runs at cleanup.
func startServer(t *testing.T, srv *SessionServer, ln net.Listener) func() error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			srv.Close()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// roundTrip writes msg on st, half-closes, reads the whole answer and
// closes st; it returns the answer.
func roundTrip(t *testing.T, st *Stream, msg string) string {
	t.Helper()
	if _, err := st.Write([]byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	st.Close()
	return string(got)
}

// dialClient dials ln and starts a client session on the connection.
func dialClient(t *testing.T, dial func() (net.Conn, error)) *Session {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s, err := Client(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tcpDialer(ln net.Listener) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
}

func TestServerSeveralClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const clients, streams = 4, 3
	started := make(chan *Session, clients)
	ended := make(chan *Session, clients)
	srv := &SessionServer{
		Handler:        echoHandler,
		OnSessionStart: func(s *Session) { started <- s },
		OnSessionEnd:   func(s *Session) { ended <- s },
	}
	stop := startServer(t, srv, ln)

	var sessions []*Session
	for range clients {
		sessions = append(sessions, dialClient(t, tcpDialer(ln)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*streams)
	for i, c := range sessions {
		for j := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := c.OpenStream(context.Background())
				if err != nil {
					errs <- err
					return
				}
				msg := fmt.Sprintf("client %d stream %d", i, j)
				st.Write([]byte(msg))
				st.CloseWrite()
				got, err := io.ReadAll(st)
				st.Close()
				if err != nil || string(got) != msg {
					errs <- fmt.Errorf("echo of %q = %q, %v", msg, got, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range clients {
		<-started
	}
	if n := srv.NumSessions(); n != clients {
		t.Fatalf("NumSessions = %d; want %d", n, clients)
	}
	seen := 0
	for s := range srv.Sessions() {
		seen++
		if st := s.Stats(); st.StreamsAccepted != streams || st.State != StateOpen {
			t.Errorf("session stats %+v; want %d streams accepted, open", st, streams)
		}
	}
	if seen != clients {
		t.Fatalf("Sessions yielded %d; want %d", seen, clients)
	}
	for range srv.Sessions() {
		break // stopping early must work
	}

	// The registry shrinks as clients leave.
	for i, c := range sessions {
		c.Close()
		<-ended
		if n, want := srv.NumSessions(), clients-i-1; n != want {
			t.Fatalf("after %d clients left: NumSessions = %d; want %d", i+1, n, want)
		}
	}
	if st := srv.Stats(); st.SessionsServed != clients || st.Sessions != 0 || st.Connections != 0 || st.Rejected != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := stop(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v; want ErrServerClosed", err)
	}
}

func TestServerSessionLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan *Session, 4)
	srv := &SessionServer{Handler: echoHandler, MaxSessions: 2, OnSessionEnd: func(s *Session) { ended <- s }}
	startServer(t, srv, ln)
	open := func(c *Session) *Stream {
		t.Helper()
		st, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	c1 := dialClient(t, tcpDialer(ln))
	c2 := dialClient(t, tcpDialer(ln))
	// A round trip on each proves that both hold a slot.
	for _, c := range []*Session{c1, c2} {
		if got := roundTrip(t, open(c), "x"); got != "x" {
			t.Fatalf("echo = %q", got)
		}
	}
	c3 := dialClient(t, tcpDialer(ln))
	<-c3.Done() // the server closed the connection at once
	if st := srv.Stats(); st.Rejected != 1 || st.Sessions != 2 {
		t.Fatalf("Stats = %+v; want 1 rejected, 2 sessions", st)
	}

	// A slot frees when a session ends.
	c1.Close()
	<-ended
	c4 := dialClient(t, tcpDialer(ln))
	if got := roundTrip(t, open(c4), "y"); got != "y" {
		t.Fatalf("echo after a slot freed = %q", got)
	}
	if st := srv.Stats(); st.Rejected != 1 || st.Sessions != 2 || st.SessionsServed != 3 {
		t.Fatalf("Stats = %+v; want 1 rejected, 2 sessions, 3 served", st)
	}
}

func TestServerTLS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, caKey := newCA(t)
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		cert := newLeaf(t, ca, caKey, "server.test", x509.ExtKeyUsageServerAuth)
		ln := newPipeListener()
		srv := &SessionServer{
			Handler:          echoHandler,
			TLSConfig:        &tls.Config{Certificates: []tls.Certificate{cert}},
			HandshakeTimeout: 3 * time.Second,
		}
		startServer(t, srv, ln)
		ctx := context.Background()

		// A client that never starts its handshake is dropped after
		// HandshakeTimeout, and does not count as a session.
		silent, err := ln.Dial(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		start := time.Now()
		if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent client Read = %v; want EOF", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("silent client dropped after %v; want 3s", d)
		}
		synctest.Wait()
		if st := srv.Stats(); st.HandshakeErrors != 1 || st.Connections != 0 || st.SessionsServed != 0 {
			t.Fatalf("Stats = %+v; want 1 handshake error and nothing else", st)
		}

		// A real TLS client is served.
		conn, err := ln.Dial(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "server.test"})
		c := dialClient(t, func() (net.Conn, error) { return tc, nil })
		st, err := c.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, st, "over tls"); got != "over tls" {
			t.Fatalf("echo = %q", got)
		}
		for s := range srv.Sessions() {
			if cs, ok := s.ConnectionState(); !ok || !cs.HandshakeComplete {
				t.Fatalf("server session ConnectionState = %v, %v", cs.HandshakeComplete, ok)
			}
		}
	})
}

// TestServerShutdownDrains: Shutdown waits for a stream in progress, whose
// answer arrives whole, while the client can no longer open streams.
func TestServerShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		ln := newPipeListener()
		srv := &SessionServer{Handler: StreamHandlerFunc(func(st *Stream) {
			data, _ := io.ReadAll(st)
			<-release
			st.Write(bytes.ToUpper(data))
		})}
		stop := startServer(t, srv, ln)
		c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
		a, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		a.Write([]byte("hello"))
		a.CloseWrite()
		synctest.Wait() // the handler waits for release

		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(context.Background()) }()
		<-c.Draining()
		if _, err := c.OpenStream(context.Background()); !errors.Is(err, ErrRemoteGoAway) {
			t.Fatalf("OpenStream while draining = %v; want ErrRemoteGoAway", err)
		}
		if _, err := ln.Dial(context.Background(), ""); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Dial after Shutdown = %v; want the listener closed", err)
		}
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while a stream was open", err)
		default:
		}
		if srv.NumSessions() != 1 {
			t.Fatalf("NumSessions while draining = %d; want 1", srv.NumSessions())
		}

		close(release)
		got, err := io.ReadAll(a)
		if err != nil || string(got) != "HELLO" {
			t.Fatalf("answer during Shutdown = %q, %v; want HELLO", got, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown = %v; want nil", err)
		}
		<-c.Done()
		if srv.NumSessions() != 0 {
			t.Fatalf("NumSessions after Shutdown = %d", srv.NumSessions())
		}
		if err := stop(); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v; want ErrServerClosed", err)
		}
	})
}

// TestServerShutdownDeadline: when ctx ends, the remaining streams are
// reset, their handlers return, and Shutdown reports ctx.Err().
func TestServerShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		handlerErr := make(chan error, 1)
		ln := newPipeListener()
		srv := &SessionServer{Handler: StreamHandlerFunc(func(st *Stream) {
			_, err := st.Read(make([]byte, 1)) // the client never writes
			handlerErr <- err
		})}
		startServer(t, srv, ln)
		c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
		if _, err := c.OpenStream(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v; want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Fatalf("Shutdown took %v; want 5s", d)
		}
		if err := <-handlerErr; !errors.Is(err, ErrStreamReset) {
			t.Fatalf("handler Read = %v; want ErrStreamReset", err)
		}
	})
}

// TestServerClose: Close ends sessions with blocked handlers and returns
// after them; Serve reports ErrServerClosed, later Serve calls too.
func TestServerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		handlerErr := make(chan error, 2)
		starts, ends := 0, 0
		ln := newPipeListener()
		srv := &SessionServer{
			Handler: StreamHandlerFunc(func(st *Stream) {
				_, err := st.Read(make([]byte, 1))
				handlerErr <- err
			}),
			OnSessionStart: func(*Session) { starts++ },
			OnSessionEnd:   func(*Session) { ends++ },
		}
		stop := startServer(t, srv, ln)
		c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
		for range 2 {
			if _, err := c.OpenStream(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if err := srv.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		for range 2 {
			if err := <-handlerErr; !errors.Is(err, ErrSessionShutdown) {
				t.Fatalf("handler Read = %v; want ErrSessionShutdown", err)
			}
		}
		if starts != 1 || ends != 1 {
			t.Fatalf("hooks: %d starts, %d ends; want 1 and 1", starts, ends)
		}
		if err := stop(); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v; want ErrServerClosed", err)
		}
		if err := srv.Serve(newPipeListener()); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Close = %v; want ErrServerClosed", err)
		}
		srv.Close() // idempotent
		<-c.Done()
	})
}

// TestServerRefuseInHook: OnSessionStart may close a session to refuse it.
func TestServerRefuseInHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		ended := make(chan error, 1)
		srv := &SessionServer{
			Handler:        echoHandler,
			OnSessionStart: func(s *Session) { s.Close() },
			OnSessionEnd:   func(s *Session) { ended <- s.Err() },
		}
		startServer(t, srv, ln)
		c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
		<-c.Done()
		if err := <-ended; !errors.Is(err, ErrLocalClose) {
			t.Fatalf("ended session Err = %v; want ErrLocalClose", err)
		}
	})
}

func TestServerInvalidFields(t *testing.T) {
	for name, srv := range map[string]*SessionServer{
		"nil handler":        {},
		"negative max":       {Handler: echoHandler, MaxSessions: -1},
		"bad session config": {Handler: echoHandler, Config: &Config{}},
	} {
		ln := newPipeListener()
		if err := srv.Serve(ln); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Serve = %v; want ErrInvalidConfig", name, err)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s: Serve left the listener open", name)
		}
	}
}

// tempErrListener fails Accept with a temporary error a few times.
type tempErrListener struct {
	*pipeListener
	fails int
}

type tempError struct{}

func (tempError) Error() string   { return "temporary" }
func (tempError) Temporary() bool { return true }

func (l *tempErrListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, tempError{}
	}
	return l.pipeListener.Accept()
}

func TestServerRetriesTemporaryAcceptErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := &tempErrListener{pipeListener: newPipeListener(), fails: 3}
		srv := &SessionServer{Handler: echoHandler}
		startServer(t, srv, ln)
		start := time.Now()
		c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
		if d := time.Since(start); d != (5+10+20)*time.Millisecond {
			t.Fatalf("accepted after %v; want 35ms of pauses", d)
		}
		st, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, st, "z"); got != "z" {
			t.Fatalf("echo = %q", got)
		}
	})
}
