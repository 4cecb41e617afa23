package yamux

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
)

// This file derives a stable peer identity from the TLS state of the
// connection under a session (spec.md §11). It reads the state through
// Session.ConnectionState and changes nothing on the wire.

// peerIDEncoding is RFC 4648 base32 with the lowercase alphabet and no
// padding: 52 characters for a SHA-256.
var peerIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// PeerID returns a stable, printable identifier of the peer's public key:
// for a session over TLS in which the peer presented a certificate, the
// SHA-256 of that certificate's SubjectPublicKeyInfo (its DER bytes as
// they appear in the certificate), in lowercase base32 without padding,
// 52 characters (spec.md §11). It depends on the key alone: a new
// certificate for the same key keeps the ID, and a new key changes it. It
// returns "" when there is none: a connection without TLS, a peer that
// sent no certificate (a server that did not ask a client for one), or a
// TLS handshake that has not completed (see [Session.ConnectionState]).
// It does not block; it hashes on every call. It is safe for concurrent
// use.
func (s *Session) PeerID() string {
	cert := s.peerCertificate()
	if cert == nil {
		return ""
	}
	return PublicKeyID(cert)
}

// PeerPublicKey returns the public key of the peer's certificate, as
// [x509.Certificate.PublicKey] holds it (for example *ecdsa.PublicKey or
// ed25519.PublicKey), or nil when [Session.PeerID] is "". It does not
// block and is safe for concurrent use.
func (s *Session) PeerPublicKey() crypto.PublicKey {
	cert := s.peerCertificate()
	if cert == nil {
		return nil
	}
	return cert.PublicKey
}

// PublicKeyID returns the identifier [Session.PeerID] reports for a peer
// that presents cert: lowercase unpadded base32 of the SHA-256 of
// cert.RawSubjectPublicKeyInfo. Use it to compute your own ID, or the ID
// to expect of a peer whose certificate you have.
func PublicKeyID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return peerIDEncoding.EncodeToString(sum[:])
}

// peerCertificate returns the peer's leaf certificate, or nil.
func (s *Session) peerCertificate() *x509.Certificate {
	cs, ok := s.ConnectionState()
	if !ok || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}
