package interop

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
	hashicorp "github.com/hashicorp/yamux"
)

// The resumption layer (spec.md §13) against hashicorp/yamux, which does
// not speak it: each side must fail at once, not after a timeout.

// TestResumeAgainstHashicorpServer: DialResumable to a hashicorp/yamux
// server. hashicorp sends nothing first; it reads our 16-byte hello as a
// header of version 0xff and closes the connection, and DialResumable
// fails at once with ErrNotResumable, long before its 1-minute handshake
// timeout.
func TestResumeAgainstHashicorpServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		cfg := hashicorp.DefaultConfig()
		cfg.LogOutput = io.Discard
		s, err := hashicorp.Server(c, cfg)
		if err != nil {
			done <- err
			return
		}
		<-s.CloseChan()
		done <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = yamux.DialResumable(ctx, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, nil, &yamux.ResumeConfig{HandshakeTimeout: time.Minute})
	if !errors.Is(err, yamux.ErrNotResumable) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("DialResumable to hashicorp/yamux: %v; want ErrNotResumable at once", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHashicorpClientAgainstResumeListener: a hashicorp/yamux client
// meeting a ResumeListener reads its hello as a header of version 0xff
// and closes its session at once; the listener counts a peer that does
// not speak the layer once the client sends its first frame.
func TestHashicorpClientAgainstResumeListener(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := yamux.NewResumeListener(tl, &yamux.ResumeConfig{HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	conn, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := hashicorp.DefaultConfig()
	cfg.LogOutput = io.Discard
	client, err := hashicorp.Client(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	select {
	case <-client.CloseChan():
	case <-time.After(30 * time.Second):
		t.Fatal("the hashicorp client did not fail")
	}
	if _, err := client.OpenStream(); err == nil {
		t.Fatal("OpenStream on the failed hashicorp session succeeded")
	}
}
