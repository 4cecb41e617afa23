package bench

import (
	"context"
	"io"
	"net"

	lyamux "github.com/libp2p/go-yamux/v5"
)

// libp2pMuxer is libp2p/go-yamux/v5 with DefaultConfig (AcceptBacklog 256,
// keepalive 30s, windows 256 KiB auto-tuned up to 16 MiB, ReadBufSize 4096,
// MaxMessageSize 64 KiB, WriteCoalesceDelay 100µs, MaxIncomingStreams 1000)
// and no memory manager, with two changes: LogOutput io.Discard (its default
// is os.Stderr), and MaxIncomingStreams raised to o.streams when a scenario
// needs more than 1000 streams (1024 streams, 10,000 idle streams).
type libp2pMuxer struct{}

func (libp2pMuxer) name() string { return "libp2p" }

func (libp2pMuxer) config(o options) *lyamux.Config {
	cfg := lyamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	if o.streams > int(cfg.MaxIncomingStreams) {
		cfg.MaxIncomingStreams = uint32(o.streams)
	}
	return cfg
}

func (m libp2pMuxer) client(c net.Conn, o options) (session, error) {
	s, err := lyamux.Client(c, m.config(o), nil)
	if err != nil {
		return nil, err
	}
	return libp2pSession{s}, nil
}

func (m libp2pMuxer) server(c net.Conn, o options) (session, error) {
	s, err := lyamux.Server(c, m.config(o), nil)
	if err != nil {
		return nil, err
	}
	return libp2pSession{s}, nil
}

type libp2pSession struct{ s *lyamux.Session }

func (s libp2pSession) open(ctx context.Context) (net.Conn, error) {
	st, err := s.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s libp2pSession) accept() (net.Conn, error) {
	st, err := s.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s libp2pSession) close() error { return s.s.Close() }
