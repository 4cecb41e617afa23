// Command tls shows yamux over mutual TLS. It makes a throwaway CA and
// issues a server and a client certificate from it at run time; the server
// requires and verifies the client's certificate, prints the CommonName it
// carries, and then echoes the streams the client opens over the session.
// TLS sits under yamux: one handshake protects and authenticates every
// stream of the session.
//
//	go run ./examples/tls
//	go run ./examples/tls -cn alice -streams 50
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	cn := fs.String("cn", "example-client", "CommonName of the client certificate")
	streams := fs.Int("streams", 10, "streams the client opens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *streams < 1 {
		return errors.New("-streams must be positive")
	}
	p, err := newPKI(*cn)
	if err != nil {
		return err
	}
	out := &syncWriter{w: stdout} // server and client print concurrently
	_, err = runLocal(ctx, p.serverConfig(), p.clientConfig(), *streams, out)
	return err
}

// runLocal serves on a loopback port with srvCfg, runs one client with
// cliCfg and n streams, shuts the server down, and returns the CommonNames
// of the client certificates the server verified.
func runLocal(ctx context.Context, srvCfg, cliCfg *tls.Config, n int, out io.Writer) ([]string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	onClient := func(cn string) {
		mu.Lock()
		seen = append(seen, cn)
		mu.Unlock()
		fmt.Fprintf(out, "server: client certificate verified, CN=%q\n", cn)
	}
	srvCtx, stop := context.WithCancel(ctx)
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		serve(srvCtx, ln, srvCfg, onClient, out)
	}()

	err = runClient(ctx, ln.Addr().String(), cliCfg, n, out)
	stop()
	<-srvDone
	mu.Lock()
	defer mu.Unlock()
	return seen, err
}

// serve accepts TCP connections until ctx ends, runs the TLS handshake on
// each, reports the verified client CommonName to onClient, and echoes every
// stream of the session it then runs over the TLS connection. It closes ln
// and returns when every connection is done.
func serve(ctx context.Context, ln net.Listener, cfg *tls.Config, onClient func(cn string), out io.Writer) {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // ln was closed
		}
		wg.Go(func() {
			if err := serveConn(ctx, tls.Server(conn, cfg), onClient); err != nil {
				fmt.Fprintf(out, "server: %s: %v\n", conn.RemoteAddr(), err)
			}
		})
	}
}

func serveConn(ctx context.Context, tc *tls.Conn, onClient func(cn string)) error {
	// Handshake before yamux starts, so that the peer is known before its
	// first stream is accepted. The session would otherwise trigger the
	// handshake from its receive loop, where nobody could look at the
	// result first.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tc.Close()
		return err
	}
	// RequireAndVerifyClientCert guarantees a verified chain here. The
	// handshake is done before the session starts, so the state is read
	// from the *tls.Conn we hold (a session also gives it later through
	// Session.ConnectionState).
	onClient(tc.ConnectionState().PeerCertificates[0].Subject.CommonName)

	sess, err := yamux.Server(tc, nil)
	if err != nil {
		tc.Close()
		return err
	}
	var wg sync.WaitGroup
	for {
		st, err := sess.AcceptStream(ctx) // ends when the client closes the session
		if err != nil {
			break
		}
		wg.Go(func() {
			defer st.Close()
			io.Copy(st, st)
		})
	}
	sess.Close() // also closes tc
	wg.Wait()
	return nil
}

// runClient connects with cfg, runs a yamux session over the TLS
// connection and echoes a short message on each of n concurrent streams.
func runClient(ctx context.Context, addr string, cfg *tls.Config, n int, out io.Writer) error {
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr) // returns after the handshake
	if err != nil {
		return err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = echo(ctx, sess, fmt.Sprintf("hello over mutual TLS, stream %d", i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(out, "client: echoed %d streams over one mutual-TLS connection\n", n)
	return nil
}

// echo sends msg on a new stream and checks the reply. Writing everything
// before reading is safe only because msg is far smaller than a stream's
// window; see the echo example for payloads of any size.
func echo(ctx context.Context, sess *yamux.Session, msg string) error {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := io.WriteString(st, msg); err != nil {
		return err
	}
	if err := st.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("stream %d: echoed %q; want %q", st.StreamID(), got, msg)
	}
	return nil
}

// pki holds a throwaway CA and the two certificates it issued.
type pki struct {
	roots  *x509.CertPool // just the CA: trusted by both ends
	server tls.Certificate
	client tls.Certificate
}

func (p *pki) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.roots,
	}
}

func (p *pki) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.client},
		RootCAs:      p.roots,
		// The dialer takes the name to verify from the address,
		// 127.0.0.1, which the server certificate lists as an IP SAN.
	}
}

// newPKI makes a CA, a server certificate for 127.0.0.1 and localhost, and
// a client certificate with CommonName clientCN, all on ECDSA P-256 keys
// and valid for an hour.
func newPKI(clientCN string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "yamux example CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caCert, err := issue(caTmpl, caKey, nil, caKey)
	if err != nil {
		return nil, err
	}
	server, err := issueLeaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "yamux example server"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, caKey)
	if err != nil {
		return nil, err
	}
	client, err := issueLeaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: clientCN},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, caKey)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	return &pki{roots: roots, server: server, client: client}, nil
}

// issueLeaf makes a key for tmpl and has the CA sign it.
func issueLeaf(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	cert, err := issue(tmpl, key, ca, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// issue signs tmpl's certificate for key with parent's key; a nil parent
// makes it self-signed.
func issue(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Minute) // tolerate small clock skew
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// syncWriter serialises writes from the server's and the client's
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
