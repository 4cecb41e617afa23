// Command chat shows messages on named channels (Session.SendAck and
// Router.HandleMessage) between two peers over mutual TLS, each known by
// the ID of its public key (Session.PeerID). Every run makes a fresh
// Ed25519 key and a self-signed certificate: there is no certificate
// authority. The connecting peer pins the listener's key ID instead
// (-peer), and the listener prints the key ID of every peer that connects
// (and with -allow accepts only those).
//
// Two channels: "presence" carries joined/left notices, "chat" carries
// lines, and the listener answers each line on the same session. With
// SendAck every message is handled before the next is sent, so the
// conversation prints in order.
//
// One process, a listener "bob" and a client "alice" over loopback:
//
//	go run ./examples/chat
//
// Two processes; the second sends the lines it reads from stdin:
//
//	go run ./examples/chat -listen 127.0.0.1:7001 -name bob     # prints its key ID
//	go run ./examples/chat -connect 127.0.0.1:7001 -peer ID -name alice
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// script is what the client says in the one-process mode.
var script = []string{"hello", "how are you?", "bye"}

// sendTimeout bounds each message.
const sendTimeout = 10 * time.Second

// run parses args and runs the listener, the client, or both.
func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	listen := fs.String("listen", "", "only listen, on this address, until interrupted")
	connect := fs.String("connect", "", "only connect to this address, and send the lines of stdin")
	peer := fs.String("peer", "", "with -connect: the listener's key ID, as it printed it (required)")
	allow := fs.String("allow", "", "with -listen: comma-separated key IDs of the peers allowed in (default: any)")
	name := fs.String("name", "", "the name in our certificate (default bob when listening, alice when connecting)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &syncWriter{w: stdout} // both peers' handlers print concurrently
	switch {
	case *listen != "" && *connect != "":
		return errors.New("use -listen or -connect, not both")
	case *connect != "" && *peer == "":
		return errors.New("-connect needs -peer: the key ID the listener printed")
	case *connect != "":
		me, err := newIdentity(or(*name, "alice"))
		if err != nil {
			return err
		}
		return runClient(ctx, me, *connect, *peer, lines(ctx, stdin), out)
	}

	var allowed []string
	if *allow != "" {
		allowed = strings.Split(*allow, ",")
	}
	bob, err := newIdentity(or(*name, "bob"))
	if err != nil {
		return err
	}
	addr := or(*listen, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := newServer(bob, allowed, out)
	fmt.Fprintf(out, "%s: listening on %s, key ID %s\n", bob.name, ln.Addr(), bob.id)
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	if *listen != "" {
		<-ctx.Done()
		srv.Close()
		<-srvErr
		return nil
	}

	// One process: alice talks to bob, pinning his key ID.
	alice, err := newIdentity("alice")
	if err == nil {
		err = runClient(ctx, alice, ln.Addr().String(), bob.id, sliceLines(script), out)
	}
	srv.Close() // returns once every handler and OnSessionEnd is done
	<-srvErr
	return err
}

// identity is one peer's name, certificate and key ID.
type identity struct {
	name string
	cert tls.Certificate
	id   string // yamux.PublicKeyID of cert: what the other peer sees as PeerID
}

// newIdentity makes an Ed25519 key and a self-signed certificate for it,
// valid for a day, with name as its CommonName.
func newIdentity(name string) (*identity, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &identity{
		name: name,
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		id:   yamux.PublicKeyID(leaf),
	}, nil
}

// errUnexpectedPeer is the handshake error for a peer whose key ID is not
// the one pinned or allowed.
var errUnexpectedPeer = errors.New("unexpected peer key")

// checkPeer returns a tls.Config.VerifyConnection that accepts a peer
// whose key ID is in ids, or any peer with a certificate when ids is
// empty. With self-signed certificates there is no chain to verify: the
// handshake has proved that the peer holds the key, and the key ID says
// which key that is.
func checkPeer(ids []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate")
		}
		id := yamux.PublicKeyID(cs.PeerCertificates[0])
		if len(ids) > 0 && !slices.Contains(ids, id) {
			return fmt.Errorf("%w: key ID %s", errUnexpectedPeer, id)
		}
		return nil
	}
}

// peerName is the CommonName of the peer's certificate; the TLS handshake
// is complete before a session of this program starts.
func peerName(s *yamux.Session) string {
	cs, _ := s.ConnectionState()
	return cs.PeerCertificates[0].Subject.CommonName
}

// router prints what arrives on the two channels; when reply is set it
// also answers every chat line on the session it came from.
func router(me *identity, reply bool, out io.Writer) *yamux.Router {
	r := &yamux.Router{}
	r.HandleMessage("presence", func(m yamux.Message) {
		fmt.Fprintf(out, "%s: %s %s\n", me.name, peerName(m.Session), m.Data)
	})
	r.HandleMessage("chat", func(m yamux.Message) {
		fmt.Fprintf(out, "%s: %s says %q\n", me.name, peerName(m.Session), m.Data)
		if !reply {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		defer cancel()
		answer := fmt.Sprintf("I heard %q", m.Data)
		if err := m.Session.SendAck(ctx, "chat", []byte(answer)); err != nil {
			fmt.Fprintf(out, "%s: answer to %s: %v\n", me.name, peerName(m.Session), err)
		}
	})
	return r
}

// newServer returns a SessionServer for me: mutual TLS with any peer
// certificate (or only the allowed key IDs), and a router that answers.
func newServer(me *identity, allowed []string, out io.Writer) *yamux.SessionServer {
	return &yamux.SessionServer{
		Handler: router(me, true, out),
		TLSConfig: &tls.Config{
			MinVersion:       tls.VersionTLS13,
			Certificates:     []tls.Certificate{me.cert},
			ClientAuth:       tls.RequireAnyClientCert,
			VerifyConnection: checkPeer(allowed),
		},
		OnSessionStart: func(s *yamux.Session) {
			fmt.Fprintf(out, "%s: %s connected, key ID %s\n", me.name, peerName(s), s.PeerID())
		},
		OnSessionEnd: func(s *yamux.Session) {
			fmt.Fprintf(out, "%s: %s disconnected\n", me.name, peerName(s))
		},
	}
}

// runClient connects to addr as me, accepting only the key ID pin, serves
// the messages the listener sends back, and sends joined, every line and
// left, each with SendAck, so that each is handled, answer included,
// before the next goes out.
func runClient(ctx context.Context, me *identity, addr, pin string, lines <-chan string, out io.Writer) error {
	d := tls.Dialer{Config: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{me.cert},
		InsecureSkipVerify: true, // no CA: VerifyConnection checks the pinned key ID instead
		VerifyConnection:   checkPeer([]string{pin}),
	}}
	conn, err := d.DialContext(ctx, "tcp", addr) // returns after the handshake
	if err != nil {
		return err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		conn.Close()
		return err
	}
	fmt.Fprintf(out, "%s: connected to %s, key ID %s (pinned)\n", me.name, peerName(sess), sess.PeerID())

	// The listener's answers arrive as streams it opens: serve them.
	r := router(me, false, out)
	var wg sync.WaitGroup
	wg.Go(func() {
		var handlers sync.WaitGroup
		defer handlers.Wait()
		for {
			st, err := sess.AcceptStream(context.Background())
			if err != nil {
				return // the session ended
			}
			handlers.Go(func() {
				r.ServeStream(st)
				st.Close()
			})
		}
	})
	defer wg.Wait()
	defer sess.Close()

	send := func(channel, msg string) error {
		ctx, cancel := context.WithTimeout(ctx, sendTimeout)
		defer cancel()
		if err := sess.SendAck(ctx, channel, []byte(msg)); err != nil {
			return fmt.Errorf("%s %q: %w", channel, msg, err)
		}
		return nil
	}
	if err := send("presence", "joined"); err != nil {
		return err
	}
	for line := range lines {
		if err := send("chat", line); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return send("presence", "left")
}

// lines returns the lines of r on a channel, closed at the end of r or
// when ctx ends. The reading goroutine ends with r; a terminal's stdin
// may keep it blocked until the process exits.
func lines(ctx context.Context, r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			select {
			case ch <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// sliceLines returns the elements of s on a closed channel.
func sliceLines(s []string) <-chan string {
	ch := make(chan string, len(s))
	for _, l := range s {
		ch <- l
	}
	close(ch)
	return ch
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// syncWriter serialises the writes of concurrent handlers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
