package interop

import (
	"context"
	"io"
	"net"
	"time"

	libp2p "github.com/libp2p/go-yamux/v5"
)

// libp2pImpl is libp2p/go-yamux v5.1.0.
//
// Behaviour the scenarios rely on (read from its source):
//   - Any GoAway received, even GoAway(normal), makes its receive loop
//     return ErrRemoteGoAway, which closes the whole session: the TCP
//     connection is closed, OpenStream returns ErrRemoteGoAway, and every
//     stream's Read and Write fail with it (it also matches ErrStreamReset).
//     Sending GoAway itself only refuses incoming SYNs with RST.
//   - RST received: Read and Write return a *StreamError{Remote: true}
//     that matches its ErrStreamReset.
//   - Stream.Reset sends RST; Stream.Close is CloseRead (local only, no
//     frame) plus CloseWrite (FIN).
//   - Session.Close sends no GoAway: it just closes the connection.
//   - A session that ends under a blocked Read makes it fail with an error
//     matching ErrStreamReset.
//   - ResetWithError(code) sends the code in the length field of the RST
//     WindowUpdate frame, where the original protocol has a window delta.
var libp2pImpl = &peerImpl{
	name:              "libp2p",
	newSession:        newLibp2p,
	errRemoteGoAway:   libp2p.ErrRemoteGoAway,
	errReset:          libp2p.ErrStreamReset,
	cutOffReadErr:     libp2p.ErrStreamReset,
	goAwayEndsSession: true,
}

func newLibp2p(conn net.Conn, client bool, o options) (mux, error) {
	cfg := libp2p.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.ConnectionWriteTimeout = 5 * time.Second // bounds its Ping
	if o.peerAcceptBacklog > 0 {
		cfg.AcceptBacklog = o.peerAcceptBacklog
	}
	var s *libp2p.Session
	var err error
	if client {
		s, err = libp2p.Client(conn, cfg, nil)
	} else {
		s, err = libp2p.Server(conn, cfg, nil)
	}
	if err != nil {
		return nil, err
	}
	return libp2pMux{s}, nil
}

type libp2pMux struct{ s *libp2p.Session }

// Its *Stream already has CloseWrite and Reset.
var _ stream = (*libp2p.Stream)(nil)

func (m libp2pMux) Open(ctx context.Context) (stream, error) {
	st, err := m.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, bound(ctx, st)
}

func (m libp2pMux) Accept(ctx context.Context) (stream, error) {
	st, err := withContext(ctx, m.s.AcceptStream)
	if err != nil {
		return nil, err
	}
	return st, bound(ctx, st)
}

func (m libp2pMux) Ping(ctx context.Context) (time.Duration, error) {
	return withContext(ctx, m.s.Ping)
}

func (m libp2pMux) GoAway() error { return m.s.GoAway() }
func (m libp2pMux) Close() error  { return m.s.Close() }
