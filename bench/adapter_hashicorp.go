package bench

import (
	"context"
	"io"
	"net"

	hyamux "github.com/hashicorp/yamux"
)

// hashicorpMuxer is hashicorp/yamux with DefaultConfig (AcceptBacklog 256,
// keepalive 30s, fixed 256 KiB stream window, StreamCloseTimeout 5m,
// StreamOpenTimeout 75s) and LogOutput io.Discard. It has no stream limit.
type hashicorpMuxer struct{}

func (hashicorpMuxer) name() string { return "hashicorp" }

func (hashicorpMuxer) config(options) *hyamux.Config {
	cfg := hyamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	return cfg
}

func (m hashicorpMuxer) client(c net.Conn, o options) (session, error) {
	s, err := hyamux.Client(c, m.config(o))
	if err != nil {
		return nil, err
	}
	return hashicorpSession{s}, nil
}

func (m hashicorpMuxer) server(c net.Conn, o options) (session, error) {
	s, err := hyamux.Server(c, m.config(o))
	if err != nil {
		return nil, err
	}
	return hashicorpSession{s}, nil
}

type hashicorpSession struct{ s *hyamux.Session }

// open ignores ctx: hashicorp's OpenStream takes none (it is bounded by
// StreamOpenTimeout instead).
func (s hashicorpSession) open(context.Context) (net.Conn, error) {
	st, err := s.s.OpenStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s hashicorpSession) accept() (net.Conn, error) {
	st, err := s.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s hashicorpSession) close() error { return s.s.Close() }
