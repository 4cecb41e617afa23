package yamux

// Write deadlines on a *tls.Conn. crypto/tls makes every write error that
// is a net.Error (a deadline among them) permanent: after one Write has
// timed out, every later Write returns the same error at once. So over TLS
// the send loop never lets a deadline fire mid-write except to declare the
// connection dead (writeConnSticky), and a stream's Write deadline is
// honoured from the batch's copy of its frames instead of by interrupting
// the write. These tests failed before that (the session died within a
// few seconds of a slow peer or a stream's deadline).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// slowReadConn reads at most chunk bytes per Read, after delay.
type slowReadConn struct {
	net.Conn
	chunk int
	delay time.Duration
}

func (c *slowReadConn) Read(p []byte) (int, error) {
	time.Sleep(c.delay)
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.Conn.Read(p)
}

// countDeadlineConn counts SetWriteDeadline calls.
type countDeadlineConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countDeadlineConn) SetWriteDeadline(t time.Time) error {
	c.n.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

func reviewTLSPair(t *testing.T, c1, c2 net.Conn) (net.Conn, net.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, key, "server")
	tc := tls.Client(c1, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	ts := tls.Server(c2, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ts.HandshakeContext(ctx) }()
	if err := errors.Join(tc.HandshakeContext(ctx), <-errc); err != nil {
		t.Fatal(err)
	}
	return tc, ts
}

// TestTLSSlowPeerKeepsSession: a peer that reads steadily at ~200 KB/s (far above
// minWriteProgress per quarter, so never "stalled" by spec.md §8) gets a
// 512 KiB transfer. Over a plain pipe it works; over TLS the first quarter
// deadline that passes during a write breaks the tls.Conn and the session
// dies with ErrConnectionWriteTimeout after spinning.
func TestTLSSlowPeerKeepsSession(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", useTLS), func(t *testing.T) {
			c1, c2 := net.Pipe()
			counter := &countDeadlineConn{Conn: c1}
			var cc, sc net.Conn = counter, &slowReadConn{Conn: c2, chunk: 4 << 10, delay: 20 * time.Millisecond}
			if useTLS {
				cc, sc = reviewTLSPair(t, cc, sc)
			}
			cfg := DefaultConfig()
			cfg.EnableKeepAlive = false
			cfg.ConnectionWriteTimeout = 2 * time.Second // quarter: 500 ms
			client, server := sessionsOver(t, cc, sc, cfg, cfg)
			cs, ss := streamPair(t, client, server)
			const size = 512 << 10
			got := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, ss)
				got <- n
			}()
			before := counter.n.Load()
			n, err := cs.Write(make([]byte, size))
			calls := counter.n.Load() - before
			if err != nil || n != size {
				t.Fatalf("Write = %d, %v (session: %v); want %d, nil. SetWriteDeadline calls during the Write: %d", n, err, client.Err(), size, calls)
			}
			cs.Close()
			if m := <-got; m != size {
				t.Fatalf("peer read %d bytes; want %d", m, size)
			}
		})
	}
}

// TestTLSWriteDeadlineKeepsSession: spec.md §7 and
// Stream.SetWriteDeadline promise that a Write whose frame is in a blocked
// connection write returns at its deadline "and the stream stays usable".
// Over TLS the interrupt (a deadline in the past) breaks the tls.Conn: the
// session dies.
func TestTLSWriteDeadlineKeepsSession(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", useTLS), func(t *testing.T) {
			c1, c2 := net.Pipe()
			gate := &gateConn{Conn: c2, open: make(chan struct{})}
			close(gate.open)
			var cc, sc net.Conn = c1, gate
			if useTLS {
				cc, sc = reviewTLSPair(t, cc, sc)
			}
			cfg := DefaultConfig()
			cfg.EnableKeepAlive = false
			cfg.ConnectionWriteTimeout = 2 * time.Second
			client, server := sessionsOver(t, cc, sc, cfg, cfg)
			cs, ss := streamPair(t, client, server)
			if _, err := cs.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(ss, buf); err != nil {
				t.Fatal(err)
			}
			gate.shut() // the peer stops reading for a while
			cs.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := cs.Write(make([]byte, 200<<10))
			t.Logf("Write at its deadline = %d, %v", n, err)
			cs.SetWriteDeadline(time.Time{})
			gate.reopen()
			go io.Copy(io.Discard, ss)
			time.Sleep(3 * time.Second) // longer than ConnectionWriteTimeout
			if err := client.Err(); err != nil {
				t.Fatalf("session died after a stream's write deadline: %v", err)
			}
			if _, err := cs.Write([]byte("still usable")); err != nil {
				t.Fatalf("Write after the deadline: %v", err)
			}
		})
	}
}

// gateConn blocks Reads while shut.
type gateConn struct {
	net.Conn
	mu   atomic.Pointer[chan struct{}]
	open chan struct{}
}

func (g *gateConn) ch() chan struct{} {
	if p := g.mu.Load(); p != nil {
		return *p
	}
	return g.open
}

func (g *gateConn) shut() {
	c := make(chan struct{})
	g.mu.Store(&c)
}

func (g *gateConn) reopen() { close(g.ch()) }

func (g *gateConn) Read(p []byte) (int, error) {
	<-g.ch()
	return g.Conn.Read(p)
}
