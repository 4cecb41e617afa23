package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"

	yamux "github.com/d5da5f0f/yamux"
)

// oursMuxer is this module's yamux with DefaultConfig (AcceptBacklog 256,
// keepalive 30s, stream windows 256 KiB auto-tuned up to 256 MiB,
// MaxIncomingStreams 1024, MaxReceiveBuffer 512 MiB), except that a
// scenario needing more streams than MaxIncomingStreams (10,000 idle
// streams) raises it to o.streams, and MaxReceiveBuffer to two initial
// windows per stream, so that every stream can be opened and still grow its
// window once.
type oursMuxer struct{}

// oursMaxWindowKiB is BENCH_OURS_MAX_WINDOW_KIB, a diagnostic (README.md,
// "Window size and the cost per byte"): our MaxStreamWindowSize in KiB for
// every rig, muxperf and the resumable adapter included; 0 when unset. A
// value that is set but not a window yamux accepts stops the run at once,
// so that a mistyped cap never passes for a measured one.
var oursMaxWindowKiB = func() int {
	v, ok := os.LookupEnv("BENCH_OURS_MAX_WINDOW_KIB")
	if !ok || v == "" {
		return 0
	}
	kib, err := strconv.Atoi(v)
	if err != nil || kib < 256 || kib > 1<<20 {
		panic(fmt.Sprintf("BENCH_OURS_MAX_WINDOW_KIB=%q: want KiB from 256 to 1048576", v))
	}
	return kib
}()

func (oursMuxer) name() string { return "ours" }

func (oursMuxer) config(o options) *yamux.Config {
	cfg := yamux.DefaultConfig()
	if oursMaxWindowKiB > 0 {
		cfg.MaxStreamWindowSize = uint32(oursMaxWindowKiB) << 10
	}
	if o.streams > cfg.MaxIncomingStreams {
		cfg.MaxIncomingStreams = o.streams
		cfg.MaxReceiveBuffer = max(cfg.MaxReceiveBuffer, 2*uint64(o.streams)*uint64(cfg.InitialStreamWindowSize))
	}
	return cfg
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
