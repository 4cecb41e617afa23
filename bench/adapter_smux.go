package bench

import (
	"context"
	"net"

	"github.com/xtaci/smux"
)

// smuxMuxer is xtaci/smux with DefaultConfig (protocol version 1, so no
// per-stream window; MaxFrameSize 32 KiB, MaxReceiveBuffer 4 MiB per
// session, MaxStreamBuffer 64 KiB, keepalive 10s/30s). It has no stream
// limit.
type smuxMuxer struct{}

func (smuxMuxer) name() string { return "smux" }

func (m smuxMuxer) client(c net.Conn, _ options) (session, error) {
	s, err := smux.Client(c, smux.DefaultConfig())
	if err != nil {
		return nil, err
	}
	return smuxSession{s}, nil
}

func (m smuxMuxer) server(c net.Conn, _ options) (session, error) {
	s, err := smux.Server(c, smux.DefaultConfig())
	if err != nil {
		return nil, err
	}
	return smuxSession{s}, nil
}

type smuxSession struct{ s *smux.Session }

// open ignores ctx: smux's OpenStream takes none.
func (s smuxSession) open(context.Context) (net.Conn, error) {
	st, err := s.s.OpenStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s smuxSession) accept() (net.Conn, error) {
	st, err := s.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s smuxSession) close() error { return s.s.Close() }
