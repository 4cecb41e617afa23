package yamux

import (
	"context"
	"net"
	"testing"
	"time"
)

// transport makes a connected pair of connections.
type transport struct {
	name string
	pair func(t testing.TB) (net.Conn, net.Conn)
}

var transports = []transport{
	{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
	{"tcp", tcpPair},
}

// tcpPair returns both ends of a loopback TCP connection. Every test of
// this module uses this one; the interop module keeps its own copy
// (interop/mux_test.go), because one module cannot import another's test
// helpers and a non-test package only for this is not worth a public API.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return c1, r.c
}

// connPair returns both ends of a loopback TCP connection if tcp, and of a
// net.Pipe otherwise (made on the caller's goroutine: in a synctest bubble,
// inside the bubble).
func connPair(t testing.TB, tcp bool) (net.Conn, net.Conn) {
	t.Helper()
	if tcp {
		return tcpPair(t)
	}
	return net.Pipe()
}

// sessionPair returns a client and a server session over a fresh pair of
// connections from tr; both are closed when the test ends.
func sessionPair(t testing.TB, tr transport, ccfg, scfg *Config) (*Session, *Session) {
	t.Helper()
	c1, c2 := tr.pair(t)
	return sessionsOver(t, c1, c2, ccfg, scfg)
}

// sessionsOver starts a client session on c1 and a server session on c2;
// both are closed when the test ends.
func sessionsOver(t testing.TB, c1, c2 net.Conn, ccfg, scfg *Config) (*Session, *Session) {
	t.Helper()
	client, err := Client(c1, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(c2, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// streamPair opens a stream on a and accepts it on b.
func streamPair(t testing.TB, a, b *Session) (*Stream, *Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	sb, err := b.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("AcceptStream: %v", err)
	}
	return sa, sb
}

func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

// sendThenClose writes total bytes to a in 1 MiB writes, then half-closes
// it; it stops at the first failed Write.
func sendThenClose(a *Stream, total int) {
	buf := make([]byte, 1<<20)
	for sent := 0; sent < total; sent += len(buf) {
		if _, err := a.Write(buf); err != nil {
			return
		}
	}
	a.CloseWrite()
}

// writeResult is what a Write returned.
type writeResult struct {
	n   int
	err error
}

// writeAsync starts st.Write(p) in a goroutine and returns the channel its
// result arrives on.
func writeAsync(st *Stream, p []byte) <-chan writeResult {
	done := make(chan writeResult, 1)
	go func() {
		n, err := st.Write(p)
		done <- writeResult{n, err}
	}()
	return done
}
