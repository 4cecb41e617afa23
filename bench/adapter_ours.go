package bench

import (
	"context"
	"net"

	yamux "github.com/d5da5f0f/yamux"
)

// oursMuxer is this module's yamux with DefaultConfig (AcceptBacklog 256,
// keepalive 30s, stream windows 256 KiB auto-tuned up to 16 MiB). Its
// DefaultConfig has no limit on concurrent streams today, so options change
// nothing; if a limit is added, raise it here to o.streams.
type oursMuxer struct{}

func (oursMuxer) name() string { return "ours" }

func (oursMuxer) config(options) *yamux.Config {
	return yamux.DefaultConfig()
}

func (m oursMuxer) client(c net.Conn, o options) (session, error) {
	s, err := yamux.Client(c, m.config(o))
	if err != nil {
		return nil, err
	}
	return oursSession{s}, nil
}

func (m oursMuxer) server(c net.Conn, o options) (session, error) {
	s, err := yamux.Server(c, m.config(o))
	if err != nil {
		return nil, err
	}
	return oursSession{s}, nil
}

type oursSession struct{ s *yamux.Session }

func (s oursSession) open(ctx context.Context) (net.Conn, error) {
	st, err := s.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s oursSession) accept() (net.Conn, error) {
	st, err := s.s.AcceptStream(context.Background())
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s oursSession) close() error { return s.s.Close() }
