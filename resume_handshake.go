package yamux

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// This file holds the handshake of the resumption layer (spec.md §13.2):
// the messages both ends exchange on every new connection before any
// record, the proofs that bind a resumption to the session's secret and
// to the TLS connection it runs on, and the client and server halves of
// the exchange. It does I/O on the raw connection only; it knows nothing
// of records, sessions or listeners.

// resumeMagic starts both hellos. Its first byte, 0xff, is never the
// first byte of a yamux frame (version 0), of a TLS record (0x14-0x17) or
// of HTTP, so a plain yamux peer rejects it at once (spec.md §8: version ≠
// 0), and we recognise a plain yamux peer from its first byte.
var resumeMagic = [4]byte{0xff, 'Y', 'R', 'S'}

const (
	resumeVersion = 1

	// hello kinds (byte 5 of a hello)
	helloNew    = 1 // client: start a new session
	helloResume = 2 // client: resume a session
	helloServer = 3 // server

	clientHelloLen   = 16 // magic, version, kind, flags(2), replay buffer(4), reserved(4)
	serverHelloLen   = 44 // magic, version, kind, flags(2), replay buffer(4), nonce(32)
	resumeRequestLen = 56 // session ID(16), bytes received(8), proof(32)
	newAnswerLen     = 50 // status, session ID(16), secret mode, secret(32)
	resumeAnswerLen  = 41 // status, bytes received(8), proof(32)

	// answer status (first byte of either answer)
	statusOK      = 0
	statusRefused = 1
	statusVersion = 2

	// secret modes of a new-session answer
	secretInline = 0 // the secret is in the answer
	secretTLS    = 1 // both ends derive it from the TLS connection

	sessionIDLen = 16
	secretLen    = 32
	nonceLen     = 32

	ekmSecretLabel  = "EXPORTER-yamux-resume-secret"
	ekmBindingLabel = "EXPORTER-yamux-resume-binding"
)

// handshakeResult is what a completed handshake established.
type handshakeResult struct {
	id         [sessionIDLen]byte
	secret     [secretLen]byte
	peerReplay uint32   // the peer's ReplayBuffer, from its hello
	peerRecvd  uint64   // resume: the bytes the peer has received
	tls        bool     // the connection is TLS
	peerKey    [32]byte // SHA-256 of the peer certificate's SPKI, if hasKey
	hasKey     bool
}

// resumeRequest is a client's resumption request as the server reads it.
type resumeRequest struct {
	id    [sessionIDLen]byte
	recvd uint64
	proof [32]byte
}

// tlsInfo is what the handshake reads from a TLS connection.
type tlsInfo struct {
	ok      bool
	state   tls.ConnectionState
	binding []byte // EKM of this connection, nil if unavailable
}

func readTLS(conn net.Conn) tlsInfo {
	c, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return tlsInfo{}
	}
	cs := c.ConnectionState()
	info := tlsInfo{ok: true, state: cs}
	if b, err := cs.ExportKeyingMaterial(ekmBindingLabel, nil, 32); err == nil {
		info.binding = b
	}
	return info
}

// peerKeyOf returns the SHA-256 of the peer certificate's
// SubjectPublicKeyInfo, as PeerID hashes it (spec.md §11).
func (t tlsInfo) peerKey() ([32]byte, bool) {
	if !t.ok || len(t.state.PeerCertificates) == 0 {
		return [32]byte{}, false
	}
	return sha256.Sum256(t.state.PeerCertificates[0].RawSubjectPublicKeyInfo), true
}

// resumeProof is HMAC-SHA256 under the session's secret of everything that
// identifies one resumption: who proves (label), the session, the server's
// fresh nonce (so that a recorded handshake cannot be replayed), the TLS
// channel binding of this connection (so that a proof cannot be relayed
// to another TLS connection) and the counts exchanged.
func resumeProof(secret []byte, label string, id [sessionIDLen]byte, nonce [nonceLen]byte, binding []byte, counts ...uint64) [32]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(id[:])
	m.Write(nonce[:])
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(binding)))
	m.Write(l[:])
	m.Write(binding)
	for _, n := range counts {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], n)
		m.Write(b[:])
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

const (
	proofClient = "yamux-resume v1 client"
	proofServer = "yamux-resume v1 server"
)

// boundConn bounds a handshake on conn: a deadline of timeout (and ctx's
// own), cancellation by ctx, and the TLS handshake first when conn has one
// pending. done lifts the bounds and reports ctx's error if it ended.
func boundConn(ctx context.Context, conn net.Conn, timeout time.Duration) (done func() error, err error) {
	dl := time.Time{}
	if timeout > 0 {
		dl = time.Now().Add(timeout)
	}
	if d, ok := ctx.Deadline(); ok && (dl.IsZero() || d.Before(dl)) {
		dl = d
	}
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	done = func() error {
		if !stop() && ctx.Err() != nil {
			return ctx.Err()
		}
		conn.SetDeadline(time.Time{})
		return nil
	}
	if hs, ok := conn.(interface{ HandshakeContext(context.Context) error }); ok {
		if err := hs.HandshakeContext(ctx); err != nil {
			done()
			return nil, fmt.Errorf("yamux: TLS handshake: %w", err)
		}
	}
	return done, nil
}

// exchangeHellos writes ours and reads theirs at the same time: both ends
// write first, and a net.Pipe holds nothing, so one goroutine writes while
// this one reads. The peer's first byte is judged alone, so that a plain
// yamux peer is recognised even if it sends less than a hello.
func exchangeHellos(conn net.Conn, ours, theirs []byte) error {
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(ours)
		errc <- err
	}()
	err := readHello(conn, theirs)
	if err != nil && !errors.Is(err, ErrNotResumable) {
		// The writer may wait for a reader that never comes. A peer that
		// does not speak the layer still gets our hello (bounded by the
		// handshake's deadline): reading it is how it fails fast.
		conn.SetDeadline(aLongTimeAgo)
	}
	werr := <-errc
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("yamux: resumption handshake write: %w", werr)
	}
	return nil
}

// errNoHello marks a connection that ended before the peer's hello began.
var errNoHello = errors.New("yamux: resumption handshake: no hello from the peer")

func readHello(conn net.Conn, b []byte) error {
	if _, err := io.ReadFull(conn, b[:1]); err != nil {
		return fmt.Errorf("%w: %w", errNoHello, err)
	}
	switch {
	case b[0] == 0:
		return fmt.Errorf("%w: the peer speaks plain yamux (first byte 0x00, a yamux version)", ErrNotResumable)
	case b[0] != resumeMagic[0]:
		return fmt.Errorf("%w: unknown first byte %#02x", ErrNotResumable, b[0])
	}
	if _, err := io.ReadFull(conn, b[1:]); err != nil {
		return fmt.Errorf("yamux: resumption handshake: hello cut short: %w", err)
	}
	if [4]byte(b[:4]) != resumeMagic {
		return fmt.Errorf("%w: bad preface %x", ErrNotResumable, b[:4])
	}
	return nil
}

func clientHello(kind byte, replay int) []byte {
	b := make([]byte, clientHelloLen)
	copy(b, resumeMagic[:])
	b[4] = resumeVersion
	b[5] = kind
	binary.BigEndian.PutUint32(b[8:], uint32(replay))
	return b
}

// parseServerHello checks a server hello and returns its replay buffer and
// nonce.
func parseServerHello(b []byte) (replay uint32, nonce [nonceLen]byte, err error) {
	if b[4] != resumeVersion {
		return 0, nonce, fmt.Errorf("%w: server speaks resumption version %d, we %d", ErrNotResumable, b[4], resumeVersion)
	}
	if b[5] != helloServer {
		return 0, nonce, fmt.Errorf("%w: resumption handshake: server hello of kind %d", ErrProtocol, b[5])
	}
	return binary.BigEndian.Uint32(b[8:]), [nonceLen]byte(b[12:44]), nil
}

// clientNew runs the client half of the handshake for a new session.
func clientNew(ctx context.Context, conn net.Conn, rc *ResumeConfig) (handshakeResult, error) {
	var res handshakeResult
	done, err := boundConn(ctx, conn, rc.handshakeTimeout())
	if err != nil {
		return res, err
	}
	err = clientNewLocked(conn, rc, &res)
	if derr := done(); err == nil {
		err = derr
	}
	return res, err
}

func clientNewLocked(conn net.Conn, rc *ResumeConfig, res *handshakeResult) error {
	sh := make([]byte, serverHelloLen)
	if err := exchangeHellos(conn, clientHello(helloNew, rc.replayBuffer()), sh); err != nil {
		if errors.Is(err, errNoHello) && !errors.Is(err, os.ErrDeadlineExceeded) {
			// A plain yamux server that waits for our first frame (as
			// hashicorp/yamux does) closes the connection on our hello.
			// (So does a resumption server with MaxHandshakes in
			// progress; on a reconnection this stays a transient error.)
			return fmt.Errorf("%w: the server closed the connection before its hello, as a plain yamux server does on ours: %w", ErrNotResumable, err)
		}
		return err
	}
	replay, _, err := parseServerHello(sh)
	if err != nil {
		return err
	}
	ans := make([]byte, newAnswerLen)
	if _, err := io.ReadFull(conn, ans); err != nil {
		return fmt.Errorf("yamux: resumption handshake: no answer: %w", err)
	}
	switch ans[0] {
	case statusOK:
	case statusVersion:
		return fmt.Errorf("%w: server refused resumption version %d", ErrNotResumable, resumeVersion)
	default:
		return fmt.Errorf("%w: new session refused (status %d)", ErrResumeRefused, ans[0])
	}
	info := readTLS(conn)
	res.id = [sessionIDLen]byte(ans[1:17])
	res.peerReplay = replay
	res.tls = info.ok
	res.peerKey, res.hasKey = info.peerKey()
	switch ans[17] {
	case secretInline:
		res.secret = [secretLen]byte(ans[18:50])
	case secretTLS:
		if !info.ok {
			return fmt.Errorf("%w: resumption handshake: TLS-derived secret without TLS", ErrProtocol)
		}
		s, err := info.state.ExportKeyingMaterial(ekmSecretLabel, res.id[:], secretLen)
		if err != nil {
			return fmt.Errorf("yamux: resumption handshake: %w", err)
		}
		res.secret = [secretLen]byte(s)
	default:
		return fmt.Errorf("%w: resumption handshake: secret mode %d", ErrProtocol, ans[17])
	}
	return nil
}

// clientResume runs the client half of a resumption: it proves that it
// holds the session's secret, tells the server how many bytes it has
// received, and checks the server's proof and count.
func clientResume(ctx context.Context, conn net.Conn, rc *ResumeConfig, id [sessionIDLen]byte, secret [secretLen]byte, recvd uint64) (handshakeResult, error) {
	var res handshakeResult
	done, err := boundConn(ctx, conn, rc.handshakeTimeout())
	if err != nil {
		return res, err
	}
	err = clientResumeLocked(conn, rc, id, secret, recvd, &res)
	if derr := done(); err == nil {
		err = derr
	}
	return res, err
}

func clientResumeLocked(conn net.Conn, rc *ResumeConfig, id [sessionIDLen]byte, secret [secretLen]byte, recvd uint64, res *handshakeResult) error {
	sh := make([]byte, serverHelloLen)
	if err := exchangeHellos(conn, clientHello(helloResume, rc.replayBuffer()), sh); err != nil {
		return err
	}
	replay, nonce, err := parseServerHello(sh)
	if err != nil {
		return err
	}
	info := readTLS(conn)
	req := make([]byte, resumeRequestLen)
	copy(req, id[:])
	binary.BigEndian.PutUint64(req[16:], recvd)
	proof := resumeProof(secret[:], proofClient, id, nonce, info.binding, recvd)
	copy(req[24:], proof[:])
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("yamux: resumption handshake write: %w", err)
	}
	ans := make([]byte, resumeAnswerLen)
	if _, err := io.ReadFull(conn, ans); err != nil {
		return fmt.Errorf("yamux: resumption handshake: no answer: %w", err)
	}
	switch ans[0] {
	case statusOK:
	case statusVersion:
		return fmt.Errorf("%w: server refused resumption version %d", ErrNotResumable, resumeVersion)
	default:
		return ErrResumeRefused
	}
	peerRecvd := binary.BigEndian.Uint64(ans[1:9])
	want := resumeProof(secret[:], proofServer, id, nonce, info.binding, recvd, peerRecvd)
	if !hmac.Equal(want[:], ans[9:41]) {
		return fmt.Errorf("%w: the server's proof does not match the session's secret", ErrResumeRefused)
	}
	res.id, res.secret = id, secret
	res.peerReplay, res.peerRecvd, res.tls = replay, peerRecvd, info.ok
	res.peerKey, res.hasKey = info.peerKey()
	return nil
}

// serverHello is the server's half of the first exchange: it sends its
// hello with a fresh nonce and reads the client's.
type serverHandshake struct {
	conn   net.Conn
	nonce  [nonceLen]byte
	kind   byte
	replay uint32 // the client's ReplayBuffer
	info   tlsInfo
	req    resumeRequest // helloResume only
}

// serverGreet runs the TLS handshake if one is pending, exchanges hellos,
// and for a resumption reads the request. The caller bounded conn.
func serverGreet(ctx context.Context, conn net.Conn, rc *ResumeConfig) (*serverHandshake, error) {
	h := &serverHandshake{conn: conn}
	rand.Read(h.nonce[:])
	sh := make([]byte, serverHelloLen)
	copy(sh, resumeMagic[:])
	sh[4] = resumeVersion
	sh[5] = helloServer
	binary.BigEndian.PutUint32(sh[8:], uint32(rc.replayBuffer()))
	copy(sh[12:], h.nonce[:])
	ch := make([]byte, clientHelloLen)
	if err := exchangeHellos(conn, sh, ch); err != nil {
		return nil, err
	}
	if ch[4] != resumeVersion {
		a := make([]byte, newAnswerLen)
		a[0] = statusVersion
		conn.Write(a)
		return nil, fmt.Errorf("%w: client speaks resumption version %d, we %d", ErrNotResumable, ch[4], resumeVersion)
	}
	h.kind = ch[5]
	h.replay = binary.BigEndian.Uint32(ch[8:])
	h.info = readTLS(conn)
	switch h.kind {
	case helloNew:
	case helloResume:
		req := make([]byte, resumeRequestLen)
		if _, err := io.ReadFull(conn, req); err != nil {
			return nil, fmt.Errorf("yamux: resumption handshake: request cut short: %w", err)
		}
		h.req.id = [sessionIDLen]byte(req[:16])
		h.req.recvd = binary.BigEndian.Uint64(req[16:24])
		h.req.proof = [32]byte(req[24:56])
	default:
		return nil, fmt.Errorf("%w: resumption handshake: client hello of kind %d", ErrProtocol, h.kind)
	}
	return h, nil
}

// acceptNew answers a new-session hello: it makes the session ID and the
// secret, and tells the client both (the secret only when TLS cannot
// derive it for both ends).
func (h *serverHandshake) acceptNew() (handshakeResult, error) {
	var res handshakeResult
	rand.Read(res.id[:])
	a := make([]byte, newAnswerLen)
	a[0] = statusOK
	copy(a[1:17], res.id[:])
	var s []byte
	if h.info.ok {
		s, _ = h.info.state.ExportKeyingMaterial(ekmSecretLabel, res.id[:], secretLen)
	}
	if s != nil {
		a[17] = secretTLS
		res.secret = [secretLen]byte(s)
	} else {
		a[17] = secretInline
		rand.Read(res.secret[:])
		copy(a[18:], res.secret[:])
	}
	res.peerReplay = h.replay
	res.tls = h.info.ok
	res.peerKey, res.hasKey = h.info.peerKey()
	if _, err := h.conn.Write(a); err != nil {
		return res, fmt.Errorf("yamux: resumption handshake write: %w", err)
	}
	return res, nil
}

// checkProof reports whether the request's proof was made with secret on
// this connection. It costs the same whether or not the session exists
// (the caller passes a random secret for an unknown ID).
func (h *serverHandshake) checkProof(secret [secretLen]byte) bool {
	want := resumeProof(secret[:], proofClient, h.req.id, h.nonce, h.info.binding, h.req.recvd)
	return hmac.Equal(want[:], h.req.proof[:])
}

// answerResume accepts a resumption, telling the client what we received.
func (h *serverHandshake) answerResume(secret [secretLen]byte, recvd uint64) error {
	a := make([]byte, resumeAnswerLen)
	a[0] = statusOK
	binary.BigEndian.PutUint64(a[1:9], recvd)
	p := resumeProof(secret[:], proofServer, h.req.id, h.nonce, h.info.binding, h.req.recvd, recvd)
	copy(a[9:], p[:])
	if _, err := h.conn.Write(a); err != nil {
		return fmt.Errorf("yamux: resumption handshake write: %w", err)
	}
	return nil
}

// refuse answers a resumption with a refusal of the same length as an
// acceptance, whatever the reason: unknown session, wrong proof, wrong
// peer, a count out of range, a session being resumed by another
// connection. The client learns nothing about which.
func (h *serverHandshake) refuse() {
	a := make([]byte, resumeAnswerLen)
	a[0] = statusRefused
	h.conn.Write(a)
}

// notResumableLinger bounds how long a connection to a peer that does not
// speak the layer is drained before it is closed.
const notResumableLinger = 500 * time.Millisecond

// closeNotResumable closes a connection to a peer that does not speak the
// layer without a TCP reset: closing with the peer's bytes unread would
// reset the connection, and a reset can destroy our hello in the peer's
// receive queue before it reads it, so that it would see "connection
// reset" instead of the invalid version that explains the failure. It
// half-closes, reads what the peer still sends until it closes (it does,
// on our hello) or notResumableLinger passes, then closes.
func closeNotResumable(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(notResumableLinger))
	io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
	conn.Close()
}

// isTransientResumeError reports whether a failed resumption attempt is
// worth another: a refusal or a peer that does not speak the layer is
// final, anything else (the dial, a timeout, a connection cut during the
// handshake) may go away.
func isTransientResumeError(err error) bool {
	return !errors.Is(err, ErrResumeRefused) && !errors.Is(err, ErrNotResumable) && !errors.Is(err, ErrProtocol)
}
