package yamux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Hostile and mismatched peers of the resumption layer (spec.md §13.5):
// forged, replayed and inconsistent resumptions are refused without
// touching the session they name, a flood of handshakes stays bounded,
// TLS binds a session to its client's key, and a plain yamux peer on
// either side fails fast with a clear error.

// echoRound writes msg on st and reads it back, at once (the echo server
// answers while it reads; windows would stall a writer that reads only
// afterwards).
func echoRound(t *testing.T, st *Stream, msg []byte) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(msg)
		werr <- err
	}()
	got := make([]byte, len(msg))
	_, err := io.ReadFull(st, got)
	if e := <-werr; e != nil {
		t.Fatalf("echo write: %v", e)
	}
	if err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo: wrong bytes")
	}
}

// serverConnOf returns the server's connection of the session id.
func serverConnOf(t *testing.T, rl *ResumeListener, id [sessionIDLen]byte) *resumableConn {
	t.Helper()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	c := rl.conns[id]
	if c == nil {
		t.Fatal("server does not know the session")
	}
	return c
}

// tryResume runs a client's resumption handshake on a new connection to
// addr with the given identity and count, and returns its error.
func tryResumeAt(t *testing.T, dial func(context.Context) (net.Conn, error), id [sessionIDLen]byte, secret [secretLen]byte, recvd uint64) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = clientResume(ctx, conn, &ResumeConfig{}, id, secret, recvd)
	return err
}

// TestResumeRefusesForgeries: an unknown session, a known session with
// the wrong secret, and the right secret with counts that cannot be (more
// than the server sent, less than the client acknowledged) are all
// refused with the same answer, and the session named keeps running on
// its connection.
func TestResumeRefusesForgeries(t *testing.T) {
	sess, rl, proxy := resumePair(t, echoHandler, nil, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoRound(t, st, make([]byte, 1<<20))
	echoRound(t, st, []byte("x")) // carries the acknowledgement of the 1 MiB
	cc := resumableOf(t, sess)
	sc := serverConnOf(t, rl, cc.id)
	sc.mu.Lock()
	sentMax, acked := sc.sentMax, sc.acked
	sc.mu.Unlock()
	if acked == 0 {
		t.Fatal("the server has no acknowledged bytes")
	}
	var randomID [sessionIDLen]byte
	var randomSecret [secretLen]byte
	rand.Read(randomID[:])
	rand.Read(randomSecret[:])
	for _, tc := range []struct {
		name   string
		id     [sessionIDLen]byte
		secret [secretLen]byte
		recvd  uint64
	}{
		{"unknown session", randomID, randomSecret, 0},
		{"wrong secret", cc.id, randomSecret, sentMax},
		{"count beyond what was sent", cc.id, cc.secret, sentMax + 1000},
		{"count below what was acknowledged", cc.id, cc.secret, acked - 1},
	} {
		if err := tryResumeAt(t, proxy.dial, tc.id, tc.secret, tc.recvd); !errors.Is(err, ErrResumeRefused) {
			t.Errorf("%s: %v; want ErrResumeRefused", tc.name, err)
		}
	}
	echoRound(t, st, []byte("still here"))
	st2 := rl.Stats()
	if st2.Refused != 4 || st2.Resumed != 0 {
		t.Errorf("server stats %+v: want 4 refused, none resumed", st2)
	}
	if rs, _ := sess.ResumeStats(); rs.Reconnects != 0 || sess.State() != StateOpen {
		t.Errorf("client stats %+v, state %v: the session was disturbed", rs, sess.State())
	}
}

// recordingConn keeps the first bytes written on it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	rec []byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.rec) < 1024 {
		c.rec = append(c.rec, p...)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestResumeRefusesReplay: the bytes of a successful resumption,
// recorded on the wire and sent again on a new connection, are refused
// (the server's nonce differs), and the session is not disturbed.
func TestResumeRefusesReplay(t *testing.T) {
	var mu sync.Mutex
	var conns []*recordingConn
	var proxy *faultProxy
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := proxy.dial(ctx)
		if err != nil {
			return nil, err
		}
		rc := &recordingConn{Conn: c}
		mu.Lock()
		conns = append(conns, rc)
		mu.Unlock()
		return rc, nil
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := NewResumeListener(tl, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	srv := &SessionServer{Handler: echoHandler}
	go srv.Serve(rl)
	defer srv.Close()
	proxy = newFaultProxy(t, tl.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := DialResumable(ctx, dial, nil, &ResumeConfig{MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoRound(t, st, []byte("before"))
	proxy.cutAll()
	echoRound(t, st, []byte("after")) // resumed
	mu.Lock()
	if len(conns) != 2 {
		mu.Unlock()
		t.Fatalf("%d connections; want 2", len(conns))
	}
	conns[1].mu.Lock()
	recorded := append([]byte(nil), conns[1].rec[:clientHelloLen+resumeRequestLen]...)
	conns[1].mu.Unlock()
	mu.Unlock()

	raw, err := proxy.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Write(recorded); err != nil {
		t.Fatal(err)
	}
	ans := make([]byte, serverHelloLen+resumeAnswerLen)
	if _, err := io.ReadFull(raw, ans); err != nil {
		t.Fatal(err)
	}
	if status := ans[serverHelloLen]; status != statusRefused {
		t.Fatalf("replayed resumption answered with status %d; want refused", status)
	}
	echoRound(t, st, []byte("undisturbed"))
	if rs, _ := sess.ResumeStats(); rs.Reconnects != 1 {
		t.Errorf("client stats %+v: want the one reconnection of the cut", rs)
	}
	if s := rl.Stats(); s.Resumed != 1 || s.Refused != 1 {
		t.Errorf("server stats %+v: want 1 resumed, 1 refused", s)
	}
}

// TestResumeHandshakeFlood: hundreds of connections that send nothing,
// garbage or forged resumptions, at once. At most MaxHandshakes are
// handled at a time, the rest are closed at once; none becomes a session;
// the legitimate session keeps working throughout.
func TestResumeHandshakeFlood(t *testing.T) {
	const maxHS = 16
	rc := &ResumeConfig{MaxHandshakes: maxHS, HandshakeTimeout: 5 * time.Second}
	sess, rl, proxy := resumePair(t, echoHandler, nil, rc, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoRound(t, st, []byte("before"))

	var wg sync.WaitGroup
	var mu sync.Mutex
	var silent []net.Conn
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := proxy.dial(ctx)
			if err != nil {
				return
			}
			switch i % 3 {
			case 0: // says nothing, holds a slot until closed
				mu.Lock()
				silent = append(silent, conn)
				mu.Unlock()
				return
			case 1: // garbage
				b := make([]byte, 64)
				rand.Read(b)
				conn.Write(b)
			case 2: // a forged resumption
				var id [sessionIDLen]byte
				var secret [secretLen]byte
				rand.Read(id[:])
				rand.Read(secret[:])
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				clientResume(cctx, conn, &ResumeConfig{}, id, secret, 0)
				ccancel()
			}
			conn.Close()
		}()
	}
	for range 20 {
		echoRound(t, st, []byte("during"))
		if s := rl.Stats(); s.Handshakes > maxHS {
			t.Fatalf("%d handshakes in progress; at most %d allowed", s.Handshakes, maxHS)
		}
	}
	wg.Wait()
	mu.Lock()
	for _, c := range silent {
		c.Close()
	}
	mu.Unlock()
	echoRound(t, st, []byte("after"))
	s := rl.Stats()
	t.Logf("server stats %+v", s)
	if s.Sessions != 1 || s.NewSessions != 1 || s.Resumed != 0 || s.HandshakesDropped == 0 {
		t.Errorf("server stats %+v: want the one session, nothing resumed, connections dropped", s)
	}
	if rs, _ := sess.ResumeStats(); rs.Reconnects != 0 {
		t.Errorf("client stats %+v: the session was disturbed", rs)
	}
}

// TestResumeAgainstPlainServer: DialResumable to a plain yamux server
// fails at once with ErrNotResumable (the server's first frame starts
// with version 0), not after a timeout.
func TestResumeAgainstPlainServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &SessionServer{Handler: echoHandler}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
	_, err = DialResumable(ctx, dial, nil, &ResumeConfig{HandshakeTimeout: time.Minute})
	if !errors.Is(err, ErrNotResumable) {
		t.Fatalf("DialResumable to a plain server: %v; want ErrNotResumable", err)
	}
}

// TestPlainClientAgainstResumeListener: a plain yamux client meeting a
// ResumeListener ends at once with a protocol error (the listener's hello
// starts with 0xff, an invalid yamux version), and the listener counts it
// as not resumable, without making a session.
func TestPlainClientAgainstResumeListener(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := NewResumeListener(tl, &ResumeConfig{HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client, err := Client(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-client.Done():
	case <-ctx.Done():
		t.Fatal("the plain client did not fail")
	}
	if err := client.Err(); !errors.Is(err, ErrInvalidVersion) {
		t.Fatalf("plain client: %v; want ErrInvalidVersion", err)
	}
	waitFor(t, func() bool { return rl.Stats().NotResumable == 1 }) // the server's goroutine counts it
	rl.Close()
	if s := rl.Stats(); s.NotResumable != 1 || s.Sessions != 0 || s.HandshakeErrors != 0 {
		t.Fatalf("server stats %+v: want 1 not resumable, no session", s)
	}
}

// TestResumeTLS: a session over mutual TLS survives a cut, resumes over a
// new TLS connection, and keeps reporting the peer's identity. Its secret
// was derived from the first TLS connection (never sent), and a client
// with another certificate cannot resume it even when it knows the
// session's ID and secret.
func TestResumeTLS(t *testing.T) {
	ca, caKey := newCA(t)
	serverCert := newLeaf(t, ca, caKey, "server.test", x509.ExtKeyUsageServerAuth)
	certA := newLeaf(t, ca, caKey, "client-a", x509.ExtKeyUsageClientAuth)
	certB := newLeaf(t, ca, caKey, "client-b", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stls := &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, Certificates: []tls.Certificate{serverCert}}
	rl, err := NewResumeListener(tls.NewListener(tl, stls), &ResumeConfig{MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	peers := make(chan string, 1)
	srv := &SessionServer{Handler: echoHandler, OnSessionStart: func(s *Session) { peers <- s.PeerID() }}
	go srv.Serve(rl)
	defer srv.Close()
	proxy := newFaultProxy(t, tl.Addr().String(), nil)
	tlsDial := func(cert tls.Certificate) func(context.Context) (net.Conn, error) {
		return func(ctx context.Context) (net.Conn, error) {
			c, err := proxy.dial(ctx)
			if err != nil {
				return nil, err
			}
			return tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "server.test", Certificates: []tls.Certificate{cert}}), nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := DialResumable(ctx, tlsDial(certA), nil, &ResumeConfig{MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoRound(t, st, []byte("before"))
	leafA, _ := x509.ParseCertificate(certA.Certificate[0])
	if got := <-peers; got != PublicKeyID(leafA) {
		t.Fatalf("server sees peer %q; want client-a's key", got)
	}
	cc := resumableOf(t, sess)
	sc := serverConnOf(t, rl, cc.id)
	sc.mu.Lock()
	first := sc.tlsState
	sc.mu.Unlock()
	derived, err := first.ExportKeyingMaterial(ekmSecretLabel, cc.id[:], secretLen)
	if err != nil || !bytes.Equal(derived, cc.secret[:]) || sc.secret != cc.secret {
		t.Fatalf("the secret is not the first connection's exported key (%v)", err)
	}

	proxy.cutAll()
	echoRound(t, st, []byte("after"))
	if _, ok := sess.ConnectionState(); !ok {
		t.Fatal("no TLS state after the resumption")
	}
	cc.mu.Lock()
	recvd := cc.recvd
	cc.mu.Unlock()
	if err := tryResumeAt(t, tlsDial(certB), cc.id, cc.secret, recvd); !errors.Is(err, ErrResumeRefused) {
		t.Fatalf("resumption with another client certificate: %v; want ErrResumeRefused", err)
	}
	echoRound(t, st, []byte("undisturbed"))
	if s := rl.Stats(); s.Resumed != 1 || s.Refused != 1 {
		t.Errorf("server stats %+v: want 1 resumed, 1 refused", s)
	}
}
