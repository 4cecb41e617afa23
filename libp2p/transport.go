package libp2p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
	"github.com/libp2p/go-libp2p/core/network"
)

// ID is the protocol ID go-libp2p negotiates for yamux.
const ID = "/yamux/1.0.0"

// Transport is a go-libp2p stream multiplexer (network.Multiplexer) whose
// connections are yamux sessions of this library. It is safe for
// concurrent use and may serve any number of connections.
type Transport struct {
	// Config is the configuration of every session; nil means
	// [DefaultConfig]. It is copied for each connection, and its
	// MemoryManager is replaced by the connection's resource scope when
	// go-libp2p passes one.
	Config *yamux.Config
}

// DefaultTransport is a Transport with [DefaultConfig], for
// libp2p.Muxer(ID, DefaultTransport).
var DefaultTransport = &Transport{}

var _ network.Multiplexer = (*Transport)(nil)

// DefaultConfig returns the session configuration a Transport uses when
// its Config is nil: yamux.DefaultConfig (windows auto-tuned up to 16 MiB,
// as go-libp2p configures libp2p/go-yamux), with MaxIncomingStreams at
// its ceiling, since go-libp2p's resource manager limits streams per peer
// (again as go-libp2p does for libp2p/go-yamux). MaxReceiveBuffer stays at
// its default as a backstop behind the resource manager.
func DefaultConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.MaxIncomingStreams = 1 << 24
	return cfg
}

// NewConn starts a yamux session over nc: the server end when isServer is
// set. When scope is not nil, a span of it is the session's
// MemoryManager: every receive window is reserved there (initial windows at
// priority 255, growth at 128), and the span ends when the connection is
// closed. It does no I/O and does not block.
func (t *Transport) NewConn(nc net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	var cfg yamux.Config
	if t.Config != nil {
		cfg = *t.Config
	} else {
		cfg = *DefaultConfig()
	}
	var span network.ResourceScopeSpan
	if scope != nil {
		var err error
		if span, err = scope.BeginSpan(); err != nil {
			return nil, fmt.Errorf("yamux: resource scope span: %w", err)
		}
		cfg.MemoryManager = span
	}
	sess, err := yamux.NewSession(nc, !isServer, &cfg)
	if err != nil {
		if span != nil {
			span.Done()
		}
		return nil, err
	}
	return &conn{sess: sess, span: span}, nil
}

// conn is a network.MuxedConn over a yamux.Session.
type conn struct {
	sess     *yamux.Session
	span     network.ResourceScopeSpan // nil without a scope
	spanDone sync.Once
}

var _ network.MuxedConn = (*conn)(nil)

// Close closes the session (GoAway normal) and the connection under it.
func (c *conn) Close() error {
	err := c.sess.Close()
	c.endSpan()
	return err
}

// CloseWithError closes the session with code in its final GoAway; the
// peer sees a *network.ConnError with the code (libp2p/go-yamux and this
// library both read it).
func (c *conn) CloseWithError(code network.ConnErrorCode) error {
	err := c.sess.CloseWithCode(yamux.GoAwayCode(code))
	c.endSpan()
	return err
}

// endSpan ends the memory span once the session is closed: by then the
// session has released everything it reserved.
func (c *conn) endSpan() {
	if c.span != nil {
		c.spanDone.Do(c.span.Done)
	}
}

func (c *conn) IsClosed() bool { return c.sess.IsClosed() }

func (c *conn) OpenStream(ctx context.Context) (network.MuxedStream, error) {
	st, err := c.sess.OpenStream(ctx)
	if err != nil {
		return nil, parseError(err)
	}
	return (*stream)(st), nil
}

func (c *conn) AcceptStream() (network.MuxedStream, error) {
	st, err := c.sess.AcceptStream(context.Background())
	if err != nil {
		return nil, parseError(err)
	}
	return (*stream)(st), nil
}

// As sets *target to the session when target is a **yamux.Session.
func (c *conn) As(target any) bool {
	if t, ok := target.(**yamux.Session); ok {
		*t = c.sess
		return true
	}
	return false
}

// stream is a network.MuxedStream over a yamux.Stream.
type stream yamux.Stream

var _ network.MuxedStream = (*stream)(nil)

func (s *stream) yamux() *yamux.Stream { return (*yamux.Stream)(s) }

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.yamux().Read(p)
	return n, streamError(err)
}

func (s *stream) Write(p []byte) (int, error) {
	n, err := s.yamux().Write(p)
	return n, streamError(err)
}

func (s *stream) Close() error      { return s.yamux().Close() }
func (s *stream) CloseRead() error  { return s.yamux().CloseRead() }
func (s *stream) CloseWrite() error { return streamError(s.yamux().CloseWrite()) }
func (s *stream) Reset() error      { return s.yamux().Reset() }

// ResetWithError resets the stream with code in the RST frame.
func (s *stream) ResetWithError(code network.StreamErrorCode) error {
	return s.yamux().ResetWithCode(uint32(code))
}

func (s *stream) SetDeadline(t time.Time) error      { return s.yamux().SetDeadline(t) }
func (s *stream) SetReadDeadline(t time.Time) error  { return s.yamux().SetReadDeadline(t) }
func (s *stream) SetWriteDeadline(t time.Time) error { return s.yamux().SetWriteDeadline(t) }

// parseError turns the library's errors into the ones go-libp2p expects:
// a reset with a code becomes a *network.StreamError, a GoAway with a code
// a *network.ConnError (both match network.ErrReset), and any other reset
// matches network.ErrReset. The library's error stays in the chain.
func parseError(err error) error {
	if err == nil {
		return nil
	}
	var se *yamux.StreamError
	if errors.As(err, &se) {
		return &network.StreamError{ErrorCode: network.StreamErrorCode(se.Code), Remote: se.Remote, TransportError: err}
	}
	var ga *yamux.GoAwayError
	if errors.As(err, &ga) && ga.Code != yamux.GoAwayNormal {
		return &network.ConnError{ErrorCode: network.ConnErrorCode(ga.Code), Remote: ga.Remote, TransportError: err}
	}
	if errors.Is(err, yamux.ErrStreamReset) {
		return fmt.Errorf("%w: %w", network.ErrReset, err)
	}
	return err
}

// streamError is parseError for a stream's Read, Write and CloseWrite: a
// stream cut off by the end of its session is reset as well, as
// libp2p/go-yamux reports it.
func streamError(err error) error {
	err = parseError(err)
	if errors.Is(err, yamux.ErrSessionShutdown) && !errors.Is(err, network.ErrReset) {
		return fmt.Errorf("%w: %w", network.ErrReset, err)
	}
	return err
}
