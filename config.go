package yamux

import (
	"fmt"
	"log/slog"
	"time"
)

// Config tunes a Session. Obtain one from [DefaultConfig] and change what
// you need; [Client], [Server] and [NewSession] copy it, so it may be
// reused. Field names and meanings follow hashicorp/yamux where it has the
// same knob, so migrating is mostly a change of import path. That includes
// its durations: a zero StreamOpenTimeout or StreamCloseTimeout disables
// it, a non-positive ConnectionWriteTimeout is invalid, and VerifyConfig
// rejects negative ones. (The lifecycle layer around the session,
// [SessionServer], [Pool] and [Router], has one other convention for all
// its timeouts: zero means the default, negative means no limit.)
type Config struct {
	// AcceptBacklog is how many of our own opened streams may wait for the
	// peer's ACK at once: OpenStream blocks beyond that. (Unlike
	// hashicorp/yamux, it does not refuse the peer's streams: a burst from
	// a peer that does not wait for ACKs, as js-libp2p's yamux, is queued
	// for AcceptStream within MaxIncomingStreams and MaxReceiveBuffer,
	// which bound an application that never accepts; spec.md §3.2.)
	// Default 256; range 1..65535.
	AcceptBacklog int

	// EnableKeepAlive sends a ping every KeepAliveInterval and closes the
	// session with [ErrKeepAliveTimeout] when one is not answered within
	// ConnectionWriteTimeout. DefaultConfig sets it; the zero value is off.
	EnableKeepAlive bool

	// KeepAliveInterval is the time between keepalive pings.
	// Default 30s; must be positive when EnableKeepAlive is set.
	KeepAliveInterval time.Duration

	// ConnectionWriteTimeout bounds how long the connection may be stalled
	// (when it supports SetWriteDeadline), and the wait for a keepalive
	// answer. The connection counts as stalled while it carries less than
	// 16 KiB per quarter of this timeout (6.4 KB/s at the default); once it
	// has been stalled for the whole timeout, the session ends with
	// [ErrConnectionWriteTimeout], between 1 and 1.25 timeouts after the
	// last write that moved data. A peer that reads a byte now and then
	// cannot stretch it. Default 10s; must be positive.
	ConnectionWriteTimeout time.Duration

	// InitialStreamWindowSize is the receive window each new stream starts
	// with, in bytes. The protocol grants 256 KiB implicitly; a larger value
	// is announced with the SYN or ACK (spec.md §4). Default 256 KiB; range
	// 256 KiB..MaxStreamWindowSize.
	InitialStreamWindowSize uint32

	// MaxStreamWindowSize is the largest receive window a stream may grow to
	// by auto-tuning, in bytes. Equal to InitialStreamWindowSize, it turns
	// auto-tuning off (hashicorp/yamux's behaviour). Default 256 MiB: a
	// 10 Gbit/s path at 50 ms needs 62.5 MB in flight, and with credit
	// returned at each quarter window only three quarters of a window are
	// sure to be in flight; a stream grows past what it needs only while it
	// reads that fast. Growth is also held to an equal share of half of
	// MaxReceiveBuffer among the open streams (spec.md §4). Range
	// 256 KiB..1 GiB.
	MaxStreamWindowSize uint32

	// StreamOpenTimeout is how long a stream we opened may wait for the
	// peer's ACK before it is reset with [ErrStreamOpenTimeout]. Zero
	// disables the timeout. Default 75s.
	StreamOpenTimeout time.Duration

	// StreamCloseTimeout is how long a stream we closed may wait for the
	// peer's FIN before it is reset and forgotten. Zero disables the
	// timeout (the stream then waits for the peer indefinitely).
	// Default 5m.
	StreamCloseTimeout time.Duration

	// MaxIncomingStreams caps the streams the peer may have open at once
	// (opened and not yet finished at both ends). A SYN beyond it is refused
	// with RST and counted; the session stays up. Default 1024; range
	// 1..1<<24.
	MaxIncomingStreams int

	// MaxReceiveBuffer caps the sum of the receive windows of all streams,
	// in bytes: the most unread data the peer can ever make this session
	// hold. Each stream reserves its window (256 KiB at first) when it is
	// opened or accepted, and auto-tuning grows a window only while the
	// budget allows: a stream to no more than its share of half of it, all
	// streams together by no more than half of it (spec.md §4). A SYN that
	// finds no room is refused with RST; our OpenStream then fails with
	// [ErrReceiveBufferFull]. A peer that sends beyond a window breaks the
	// protocol. Default 512 MiB (MaxIncomingStreams at the initial window is
	// half of it); range InitialStreamWindowSize..1<<40.
	MaxReceiveBuffer uint64

	// MemoryManager, if set, is asked for every receive window on top of
	// the MaxReceiveBuffer budget, and given it back when the stream is
	// forgotten or the session ends; a refusal refuses the stream or the
	// window's growth, never the session (see [MemoryManager]). Nil, the
	// default, asks nobody.
	MemoryManager MemoryManager

	// Logger receives one record when the session ends for any reason but
	// Close or Shutdown (at Warn with the cause: a protocol error, an error
	// GoAway, a keepalive or write timeout; at Debug when the peer just
	// closed the connection), the peer's GoAway(normal) at Info, and
	// refused streams at Debug. Nil discards everything.
	Logger *slog.Logger
}

// Defaults, as DefaultConfig returns them.
const (
	defaultAcceptBacklog          = 256
	defaultKeepAliveInterval      = 30 * time.Second
	defaultConnectionWriteTimeout = 10 * time.Second
	defaultMaxStreamWindowSize    = 256 << 20
	defaultStreamOpenTimeout      = 75 * time.Second
	defaultStreamCloseTimeout     = 5 * time.Minute

	defaultMaxIncomingStreams = 1024
	defaultMaxReceiveBuffer   = 512 << 20

	maxAcceptBacklog = 65535
	maxIncomingLimit = 1 << 24
	maxBufferLimit   = 1 << 40
	maxWindowSize    = 1 << 30
)

// DefaultConfig returns the configuration used when a nil *Config is
// passed: AcceptBacklog 256, keepalive on every 30s, ConnectionWriteTimeout
// 10s, stream windows starting at 256 KiB and auto-tuned up to 256 MiB,
// StreamOpenTimeout 75s, StreamCloseTimeout 5m, at most 1024 streams opened
// by the peer and 512 MiB of receive windows in all, no logging.
func DefaultConfig() *Config {
	return &Config{
		AcceptBacklog:           defaultAcceptBacklog,
		EnableKeepAlive:         true,
		KeepAliveInterval:       defaultKeepAliveInterval,
		ConnectionWriteTimeout:  defaultConnectionWriteTimeout,
		InitialStreamWindowSize: initialStreamWindow,
		MaxStreamWindowSize:     defaultMaxStreamWindowSize,
		StreamOpenTimeout:       defaultStreamOpenTimeout,
		StreamCloseTimeout:      defaultStreamCloseTimeout,
		MaxIncomingStreams:      defaultMaxIncomingStreams,
		MaxReceiveBuffer:        defaultMaxReceiveBuffer,
	}
}

// VerifyConfig reports the first problem with cfg, wrapped in
// [ErrInvalidConfig], or nil. It never changes cfg.
func VerifyConfig(cfg *Config) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg == nil:
		return bad("nil config")
	case cfg.AcceptBacklog <= 0 || cfg.AcceptBacklog > maxAcceptBacklog:
		return bad("AcceptBacklog %d not in 1..%d", cfg.AcceptBacklog, maxAcceptBacklog)
	case cfg.EnableKeepAlive && cfg.KeepAliveInterval <= 0:
		return bad("KeepAliveInterval %v must be positive", cfg.KeepAliveInterval)
	case cfg.ConnectionWriteTimeout <= 0:
		return bad("ConnectionWriteTimeout %v must be positive", cfg.ConnectionWriteTimeout)
	case cfg.InitialStreamWindowSize < initialStreamWindow:
		return bad("InitialStreamWindowSize %d below the protocol's %d", cfg.InitialStreamWindowSize, initialStreamWindow)
	case cfg.MaxStreamWindowSize < cfg.InitialStreamWindowSize || cfg.MaxStreamWindowSize > maxWindowSize:
		return bad("MaxStreamWindowSize %d not in InitialStreamWindowSize(%d)..%d", cfg.MaxStreamWindowSize, cfg.InitialStreamWindowSize, maxWindowSize)
	case cfg.StreamOpenTimeout < 0:
		return bad("StreamOpenTimeout %v is negative", cfg.StreamOpenTimeout)
	case cfg.StreamCloseTimeout < 0:
		return bad("StreamCloseTimeout %v is negative", cfg.StreamCloseTimeout)
	case cfg.MaxIncomingStreams <= 0 || cfg.MaxIncomingStreams > maxIncomingLimit:
		return bad("MaxIncomingStreams %d not in 1..%d", cfg.MaxIncomingStreams, maxIncomingLimit)
	case cfg.MaxReceiveBuffer < uint64(cfg.InitialStreamWindowSize) || cfg.MaxReceiveBuffer > maxBufferLimit:
		return bad("MaxReceiveBuffer %d not in InitialStreamWindowSize(%d)..%d", cfg.MaxReceiveBuffer, cfg.InitialStreamWindowSize, uint64(maxBufferLimit))
	}
	return nil
}
