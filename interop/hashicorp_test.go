package interop

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	hashicorp "github.com/hashicorp/yamux"
)

// hashicorpImpl is hashicorp/yamux v0.1.2, the reference implementation.
//
// Behaviour the scenarios rely on (read from its source):
//   - GoAway(normal) received: OpenStream returns its ErrRemoteGoAway;
//     existing streams continue, the session stays up. It may still open
//     streams itself after sending GoAway (it checks only the remote flag).
//   - RST received: Read and Write return its ErrConnectionReset.
//   - It has no Stream.Reset. It sends RST only to refuse a stream (accept
//     backlog full, or after its own GoAway) and when StreamCloseTimeout
//     passes after its Close without the peer's FIN.
//   - Stream.Close is a half-close (FIN); reads still work after it.
//   - A session that ends under a blocked Read makes it return io.EOF, as
//     if the stream had been closed cleanly: a cut-off stream cannot be told
//     from a complete one. AcceptStream then returns the session's cause,
//     io.EOF when the connection was closed.
//   - Session.Close sends no GoAway: it just closes the connection.
var hashicorpImpl = &peerImpl{
	name:            "hashicorp",
	newSession:      newHashicorp,
	errRemoteGoAway: hashicorp.ErrRemoteGoAway,
	errReset:        hashicorp.ErrConnectionReset,
	cutOffReadErr:   io.EOF,
}

func newHashicorp(conn net.Conn, client bool, o options) (mux, error) {
	cfg := hashicorp.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.ConnectionWriteTimeout = 5 * time.Second // bounds its Ping
	if o.peerAcceptBacklog > 0 {
		cfg.AcceptBacklog = o.peerAcceptBacklog
	}
	if o.streamCloseTimeout > 0 {
		cfg.StreamCloseTimeout = o.streamCloseTimeout
	}
	var s *hashicorp.Session
	var err error
	if client {
		s, err = hashicorp.Client(conn, cfg)
	} else {
		s, err = hashicorp.Server(conn, cfg)
	}
	if err != nil {
		return nil, err
	}
	return hashicorpMux{s}, nil
}

type hashicorpMux struct{ s *hashicorp.Session }

func (m hashicorpMux) Open(ctx context.Context) (stream, error) {
	// OpenStream takes no context and blocks while AcceptBacklog streams
	// await their ACK.
	st, err := withContext(ctx, m.s.OpenStream)
	if err != nil {
		return nil, err
	}
	return hashicorpStream{st}, bound(ctx, st)
}

func (m hashicorpMux) Accept(ctx context.Context) (stream, error) {
	st, err := m.s.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, err
	}
	return hashicorpStream{st}, bound(ctx, st)
}

func (m hashicorpMux) Ping(ctx context.Context) (time.Duration, error) {
	return withContext(ctx, m.s.Ping)
}

func (m hashicorpMux) GoAway() error { return m.s.GoAway() }
func (m hashicorpMux) Close() error  { return m.s.Close() }

// hashicorpStream gives a hashicorp stream the CloseWrite and Reset of the
// stream interface.
type hashicorpStream struct{ *hashicorp.Stream }

// CloseWrite is hashicorp's Close, which only sends FIN.
func (s hashicorpStream) CloseWrite() error { return s.Stream.Close() }

// Reset is not available in hashicorp/yamux.
func (s hashicorpStream) Reset() error { return errors.ErrUnsupported }
