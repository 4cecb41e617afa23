package yamux

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"testing"
	"testing/synctest"
	"time"
)

func TestStateTransitions(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		if client.State() != StateOpen || server.State() != StateOpen {
			t.Fatalf("new sessions: %v/%v; want open", client.State(), server.State())
		}
		server.GoAway()
		select {
		case <-client.Draining():
		case <-time.After(10 * time.Second):
			t.Fatal("client did not see the GoAway")
		}
		if client.State() != StateDraining || server.State() != StateDraining {
			t.Fatalf("after GoAway: %v/%v; want draining", client.State(), server.State())
		}
		client.Close()
		<-server.Done()
		if client.State() != StateClosed || server.State() != StateClosed {
			t.Fatalf("after Close: %v/%v; want closed", client.State(), server.State())
		}
		if !errors.Is(client.Err(), ErrLocalClose) {
			t.Fatalf("client cause %v; want ErrLocalClose", client.Err())
		}
		var ga *GoAwayError
		if err := server.Err(); !errors.As(err, &ga) || !ga.Remote || ga.Code != GoAwayNormal {
			t.Fatalf("server cause %v; want remote GoAway(normal)", err)
		}
	})
}

func TestRemoteGoAwayCodes(t *testing.T) {
	for _, code := range []GoAwayCode{GoAwayProtocolError, GoAwayInternalError} {
		t.Run(code.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server := bubblePair(t, nil, nil)
				// The server ends with an error code (as on a protocol error).
				server.shutdown(errors.New("test"), code, true)
				<-client.Done()
				want := &GoAwayError{Code: code, Remote: true}
				if err := client.Err(); !errors.Is(err, want) || !errors.Is(err, ErrSessionShutdown) {
					t.Fatalf("client cause %v; want %v", err, want)
				}
			})
		})
	}
}

// TestShutdownLosesNothing: bytes written before Shutdown all arrive, and
// Shutdown returns nil once the streams finish on their own.
func TestShutdownLosesNothing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		const streams, size = 8, 300 << 10
		sent := make([][]byte, streams)
		got := make(chan []byte, streams)
		var opened []*Stream
		for i := range sent {
			a, b := streamPair(t, client, server)
			opened = append(opened, a)
			sent[i] = make([]byte, size)
			rand.Read(sent[i])
			go func() {
				data, err := io.ReadAll(b)
				if err != nil {
					data = nil
				}
				b.Close()
				got <- data
			}()
		}
		writes := make(chan error, streams)
		for i, a := range opened {
			go func() {
				_, err := a.Write(sent[i])
				if err == nil {
					err = a.Close()
				}
				writes <- err
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := client.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown = %v; want nil", err)
		}
		for range opened {
			if err := <-writes; err != nil {
				t.Fatalf("write during Shutdown: %v", err)
			}
		}
		total := 0
		for range opened {
			data := <-got
			found := false
			for _, s := range sent {
				if bytes.Equal(s, data) {
					found = true
				}
			}
			if !found {
				t.Fatalf("a stream received %d bytes that match nothing sent", len(data))
			}
			total += len(data)
		}
		if total != streams*size {
			t.Fatalf("received %d bytes; want %d", total, streams*size)
		}
		if client.State() != StateClosed || !errors.Is(client.Err(), ErrLocalClose) {
			t.Fatalf("after Shutdown: %v, %v", client.State(), client.Err())
		}
	})
}

func TestShutdownContextExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := bubblePair(t, nil, nil)
		_, b := streamPair(t, client, server) // never finished
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := client.OpenStream(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := client.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v; want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Fatalf("Shutdown returned after %v; want 5s", d)
		}
		if _, err := b.Read(make([]byte, 1)); err == nil || err == io.EOF {
			t.Fatalf("peer Read after forced Shutdown = %v; want an error", err)
		}
		// No new streams in either direction after Shutdown began.
		if _, err := server.OpenStream(context.Background()); err == nil {
			t.Fatal("server opened a stream after the client's Shutdown")
		}
	})
}

func TestStats(t *testing.T) {
	client, server := sessionPair(t, transports[1], nil, nil)
	a, b := streamPair(t, client, server)
	msg := make([]byte, 100<<10)
	go func() { a.Write(msg); a.CloseWrite() }()
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	cs, ss := client.Stats(), server.Stats()
	if cs.StreamsOpened != 1 || ss.StreamsAccepted != 1 {
		t.Fatalf("opened/accepted = %d/%d; want 1/1", cs.StreamsOpened, ss.StreamsAccepted)
	}
	if cs.BytesSent < uint64(len(msg)) || ss.BytesReceived < uint64(len(msg)) {
		t.Fatalf("bytes sent %d received %d; want >= %d", cs.BytesSent, ss.BytesReceived, len(msg))
	}
	if cs.FramesSent == 0 || ss.FramesReceived == 0 || cs.LastRTT <= 0 || ss.LastFrameReceived.IsZero() {
		t.Fatalf("stats not counting: %+v / %+v", cs, ss)
	}
	as, bs := a.Stats(), b.Stats()
	if as.BytesSent != uint64(len(msg)) || bs.BytesReceived != uint64(len(msg)) || as.FramesSent != bs.FramesReceived-1 {
		// The receiver also counts the FIN frame.
		t.Fatalf("stream stats: sender %+v receiver %+v", as, bs)
	}
	if bs.WindowSize < initialStreamWindow || bs.MaxWindowSize != DefaultConfig().MaxStreamWindowSize {
		t.Fatalf("stream windows: %+v", bs)
	}
}

// TestMutualTLSIdentity: over a mutually authenticated TLS connection, the
// server reads the client's certificate identity from the Session.
func TestMutualTLSIdentity(t *testing.T) {
	ca, caKey := newCA(t)
	serverCert := newLeaf(t, ca, caKey, "server.test", x509.ExtKeyUsageServerAuth)
	clientCert := newLeaf(t, ca, caKey, "client-42", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	c1, c2 := tcpPair(t)
	tc := tls.Client(c1, &tls.Config{RootCAs: pool, ServerName: "server.test", Certificates: []tls.Certificate{clientCert}})
	ts := tls.Server(c2, &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, Certificates: []tls.Certificate{serverCert}})
	client, err := Client(tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := Server(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	a, b := streamPair(t, client, server)
	a.Write([]byte("hi"))
	if _, err := io.ReadFull(b, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	state, ok := server.ConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		t.Fatalf("ConnectionState = %v, %v; want the client's certificate", ok, len(state.PeerCertificates))
	}
	if cn := state.PeerCertificates[0].Subject.CommonName; cn != "client-42" {
		t.Fatalf("client identity %q; want client-42", cn)
	}
	if _, ok := (&Session{conn: c1}).ConnectionState(); ok {
		t.Fatal("a plain TCP session claims a TLS state")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
