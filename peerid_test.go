package yamux

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"regexp"
	"testing"
	"time"
)

// selfSigned makes a certificate for key with CommonName cn and a fresh
// serial number, so that two calls with one key give two certificates.
func selfSigned(t *testing.T, key crypto.Signer, cn string) tls.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// tlsSessions runs a TLS handshake over a pipe, the server presenting
// serverCert and asking for a client certificate when clientCert is not
// nil, and starts a session on each end.
func tlsSessions(t *testing.T, serverCert tls.Certificate, clientCert *tls.Certificate) (client, server *Session) {
	t.Helper()
	c1, c2 := net.Pipe()
	ccfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} // identities are checked by key ID below
	scfg := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS13}
	if clientCert != nil {
		ccfg.Certificates = []tls.Certificate{*clientCert}
		scfg.ClientAuth = tls.RequireAnyClientCert
	}
	tc, ts := tls.Client(c1, ccfg), tls.Server(c2, scfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ts.HandshakeContext(ctx) }()
	err := tc.HandshakeContext(ctx)
	if err := errors.Join(err, <-errc); err != nil {
		c1.Close()
		c2.Close()
		t.Fatalf("handshake: %v", err)
	}
	return sessionsOver(t, tc, ts, nil, nil)
}

var peerIDForm = regexp.MustCompile(`^[a-z2-7]{52}$`)

func TestPeerID(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"ecdsa": ecKey, "ed25519": edKey} {
		t.Run(name, func(t *testing.T) {
			serverCert := selfSigned(t, key, "server")
			first := selfSigned(t, key, "client")
			renewed := selfSigned(t, key, "client, renewed")
			otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			other := selfSigned(t, otherKey, "client")

			var ids []string
			for _, cc := range []tls.Certificate{first, renewed, other} {
				client, server := tlsSessions(t, serverCert, &cc)
				id := server.PeerID()
				if !peerIDForm.MatchString(id) || id != PublicKeyID(cc.Leaf) {
					t.Fatalf("server.PeerID() = %q; want PublicKeyID of the client's certificate, %q", id, PublicKeyID(cc.Leaf))
				}
				if got, want := client.PeerID(), PublicKeyID(serverCert.Leaf); got != want {
					t.Fatalf("client.PeerID() = %q; want the server's %q", got, want)
				}
				pub, ok := server.PeerPublicKey().(interface{ Equal(crypto.PublicKey) bool })
				if !ok || !pub.Equal(cc.PrivateKey.(crypto.Signer).Public()) {
					t.Fatalf("server.PeerPublicKey() = %v; want the client's key", server.PeerPublicKey())
				}
				ids = append(ids, id)
			}
			if ids[0] != ids[1] {
				t.Errorf("a new certificate for the same key changed the ID: %q, then %q", ids[0], ids[1])
			}
			if ids[0] == ids[2] {
				t.Errorf("a different key kept the ID %q", ids[0])
			}
		})
	}
}

func TestPeerIDWithoutOne(t *testing.T) {
	c1, c2 := net.Pipe()
	client, server := sessionsOver(t, c1, c2, nil, nil)
	for _, s := range []*Session{client, server} {
		if id, key := s.PeerID(), s.PeerPublicKey(); id != "" || key != nil {
			t.Fatalf("PeerID, PeerPublicKey over a plain pipe = %q, %v; want empty", id, key)
		}
	}

	// TLS in which only the server presents a certificate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client, server = tlsSessions(t, selfSigned(t, key, "server"), nil)
	if id := server.PeerID(); id != "" || server.PeerPublicKey() != nil {
		t.Fatalf("server.PeerID() without a client certificate = %q; want empty", id)
	}
	if client.PeerID() == "" {
		t.Fatal("client.PeerID() is empty; want the server's")
	}
}

// TestPublicKeyIDVector is the test vector of spec.md §11.
func TestPublicKeyIDVector(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	cert := selfSigned(t, ed25519.NewKeyFromSeed(seed), "vector")
	const want = "ubiig7mfa4cyfthxhffqtceeptbrfs4iewnyssez63zdttyxsgsq"
	if got := PublicKeyID(cert.Leaf); got != want {
		t.Fatalf("PublicKeyID = %q; want %q (SPKI %x)", got, want, cert.Leaf.RawSubjectPublicKeyInfo)
	}
}
