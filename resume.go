package yamux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// This file holds the API of the resumption layer (spec.md §13): a
// connection under the session that survives the loss of the network
// connection it runs on. [DialResumable] is the client, [ResumeListener]
// the server; the session above sees one uninterrupted byte stream, so the
// yamux wire protocol and everything above it are unchanged. The
// connection itself is in resume_conn.go, its handshake in
// resume_handshake.go, the server's table in resume_server.go.

// Errors of the resumption layer.
var (
	// ErrNotResumable: the peer does not speak the resumption layer (a
	// plain yamux peer, something else, or another version of the layer).
	// The handshake fails with it at once, without waiting for a timeout.
	ErrNotResumable = errors.New("yamux: peer does not speak the resumption layer")

	// ErrResumeRefused: the server refused to resume the session (it does
	// not know it any more, or the proof or the peer identity did not
	// match, or the counts exchanged were inconsistent). The session ends
	// with it.
	ErrResumeRefused = errors.New("yamux: session resumption refused")

	// ErrResumeTimeout: the connection was lost and not re-established
	// within [ResumeConfig.ResumeTimeout]. The session ends with it, on
	// the client and on the server.
	ErrResumeTimeout = errors.New("yamux: connection not resumed within ResumeTimeout")

	// ErrResumeLimit: a server dropped a session that waited for its client
	// to reconnect, because [ResumeConfig.MaxDetached] sessions were
	// waiting and a newer one lost its connection. The session ends with it.
	ErrResumeLimit = errors.New("yamux: detached session dropped: MaxDetached reached")
)

// ResumeConfig tunes the resumption layer. The zero value means the
// defaults; it follows the lifecycle layer's convention for its timeouts:
// zero means the default, negative means no limit. It is copied where it
// is used.
type ResumeConfig struct {
	// ResumeTimeout is how long a lost connection may take to come back,
	// counted from the moment the loss was detected: the client redials
	// for that long, and the server keeps the detached session for that
	// long. Then the session ends with [ErrResumeTimeout]. Default 30s;
	// negative: forever (a server then still holds at most MaxDetached).
	ResumeTimeout time.Duration

	// ReplayBuffer is the most bytes one end holds that it sent and the
	// peer has not acknowledged: the memory a session may keep to replay
	// after a reconnection. A Write blocks while it is full. It also bounds
	// throughput to ReplayBuffer per round trip. Default 4 MiB; range
	// 64 KiB..1 GiB.
	ReplayBuffer int

	// AckTimeout declares the connection dead (and starts a
	// reconnection) when it carried traffic and then nothing at all
	// arrived from the peer for this long: neither data, nor an
	// acknowledgement, nor the answer to the probe the layer sends after
	// half of it. Keep it below the session's
	// Config.ConnectionWriteTimeout, so that a dead connection is
	// re-established before the session's stall detection would end the
	// session (DialResumable caps it at half of that). Default 5s;
	// negative: never (then only read and write errors and the session's
	// keepalive detect a dead connection).
	AckTimeout time.Duration

	// HandshakeTimeout bounds each handshake of the layer, TLS handshake
	// included when the connection is a *tls.Conn that has not done it.
	// Default 10s; negative: no limit.
	HandshakeTimeout time.Duration

	// MinBackoff and MaxBackoff bound the client's pause between two
	// attempts to reconnect: it starts at MinBackoff, doubles up to
	// MaxBackoff, and each pause is drawn at random from its upper half
	// (jitter, so that many clients of one server do not redial in step).
	// Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration

	// MaxDetached caps, on a server, the sessions waiting for their client
	// to reconnect. When one more loses its connection, the one waiting
	// longest ends with [ErrResumeLimit]. Memory held by waiting sessions
	// is so at most MaxDetached × ReplayBuffer. Default 1024.
	MaxDetached int

	// MaxHandshakes caps, on a server, the handshakes in progress at once
	// (including new sessions waiting for Accept); a connection beyond it
	// is closed at once, before any byte is read or written. Default 256.
	MaxHandshakes int

	// Logger receives reconnections at Info and failed attempts and
	// refused handshakes at Debug. Nil discards everything.
	Logger *slog.Logger
}

// Defaults of ResumeConfig.
const (
	defaultResumeTimeout    = 30 * time.Second
	defaultReplayBuffer     = 4 << 20
	defaultAckTimeout       = 5 * time.Second
	defaultResumeHandshake  = 10 * time.Second
	defaultMinBackoff       = 100 * time.Millisecond
	defaultMaxBackoff       = 5 * time.Second
	defaultMaxDetached      = 1024
	defaultMaxHandshakes    = 256
	minReplayBuffer         = 64 << 10
	maxReplayBuffer         = 1 << 30
	resumeAckDelay          = 20 * time.Millisecond
	resumeAckBytes          = 256 << 10
	resumeMaxSendRecord     = 256 << 10
	resumeMaxReceivedRecord = 1 << 20
)

func (rc *ResumeConfig) resumeTimeout() time.Duration {
	return timeoutOr(rc.ResumeTimeout, defaultResumeTimeout)
}

func (rc *ResumeConfig) replayBuffer() int {
	if rc.ReplayBuffer == 0 {
		return defaultReplayBuffer
	}
	return rc.ReplayBuffer
}

func (rc *ResumeConfig) ackTimeout() time.Duration {
	return timeoutOr(rc.AckTimeout, defaultAckTimeout)
}

func (rc *ResumeConfig) handshakeTimeout() time.Duration {
	return timeoutOr(rc.HandshakeTimeout, defaultResumeHandshake)
}

func (rc *ResumeConfig) backoff() (lo, hi time.Duration) {
	lo, hi = rc.MinBackoff, rc.MaxBackoff
	if lo <= 0 {
		lo = defaultMinBackoff
	}
	if hi <= 0 {
		hi = defaultMaxBackoff
	}
	return lo, max(lo, hi)
}

func (rc *ResumeConfig) maxDetached() int {
	if rc.MaxDetached == 0 {
		return defaultMaxDetached
	}
	return rc.MaxDetached
}

func (rc *ResumeConfig) maxHandshakes() int {
	if rc.MaxHandshakes == 0 {
		return defaultMaxHandshakes
	}
	return rc.MaxHandshakes
}

func (rc *ResumeConfig) logger() *slog.Logger {
	if rc.Logger != nil {
		return rc.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// verify reports the first problem with rc, wrapped in ErrInvalidConfig.
func (rc *ResumeConfig) verify() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: ResumeConfig: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case rc.ReplayBuffer != 0 && (rc.ReplayBuffer < minReplayBuffer || rc.ReplayBuffer > maxReplayBuffer):
		return bad("ReplayBuffer %d not in %d..%d", rc.ReplayBuffer, minReplayBuffer, maxReplayBuffer)
	case rc.MaxDetached < 0:
		return bad("MaxDetached %d is negative", rc.MaxDetached)
	case rc.MaxHandshakes < 0:
		return bad("MaxHandshakes %d is negative", rc.MaxHandshakes)
	case rc.MinBackoff < 0 || rc.MaxBackoff < 0:
		return bad("negative backoff %v..%v", rc.MinBackoff, rc.MaxBackoff)
	}
	return nil
}

// DialResumable dials a connection with dial, runs the resumption
// handshake on it (spec.md §13.2) and returns the client end of a session
// that runs over a resumable connection: when the connection is lost, the
// session's Reads and Writes wait while dial is called again, with
// exponential backoff and jitter, for up to rcfg.ResumeTimeout, and the
// session carries on where it was once the server has resumed it.
// [Session.State] is [StateReconnecting] meanwhile, and
// [Session.Reconnecting] tells when that changes.
//
// dial must return a new connection to the same server each time, honour
// ctx, and may return a *tls.Conn (its handshake is run, under
// rcfg.HandshakeTimeout, if it has not been): over TLS the session's secret
// is derived from the first TLS connection, never sent, and a resumption
// must come over TLS with the same client certificate key, if there was
// one (spec.md §13.5). A nil cfg means [DefaultConfig]; a nil rcfg the
// defaults of [ResumeConfig]. Both are copied. rcfg.AckTimeout is capped
// at half of cfg.ConnectionWriteTimeout.
//
// It blocks until the first connection is made and its handshake done, or
// ctx ends; the first dial is not retried. It returns an error wrapping
// [ErrInvalidConfig], [ErrNotResumable] when the server does not speak the
// layer (a plain yamux server), dial's error, or ctx.Err(). A session over
// a resumable connection ends, beyond the usual causes, with
// [ErrResumeTimeout] or [ErrResumeRefused] (see [Session.Err]).
func DialResumable(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), cfg *Config, rcfg *ResumeConfig) (*Session, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	var rc ResumeConfig
	if rcfg != nil {
		rc = *rcfg
	}
	if err := rc.verify(); err != nil {
		return nil, err
	}
	if t := rc.ackTimeout(); t > 0 && t > cfg.ConnectionWriteTimeout/2 {
		rc.AckTimeout = cfg.ConnectionWriteTimeout / 2
	}
	c, err := dialResumableConn(ctx, dial, &rc)
	if err != nil {
		return nil, err
	}
	sess, err := Client(c.netConn(), cfg)
	if err != nil { // cannot happen: the config was verified
		c.Close()
		return nil, err
	}
	return sess, nil
}

// dialResumableConn dials the first connection of a client's resumable
// connection and runs the new-session handshake on it.
func dialResumableConn(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), rc *ResumeConfig) (*resumableConn, error) {
	if dial == nil {
		return nil, fmt.Errorf("%w: DialResumable: nil dial", ErrInvalidConfig)
	}
	raw, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	hs, err := clientNew(ctx, raw, rc)
	if errors.Is(err, ErrNotResumable) {
		closeNotResumable(raw)
		return nil, err
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return newResumableConn(true, raw, hs, rc, nil, dial), nil
}

// resumer is what a session asks of a resumable connection (the hooks in
// lifecycle.go and ping.go).
type resumer interface {
	// resumeState reports whether the connection is being re-established,
	// and a channel closed at the next change of that.
	resumeState() (reconnecting bool, changed <-chan struct{})
	// connectionLost tells the connection that the session's keepalive
	// went unanswered: it re-establishes itself and reports true, or
	// reports false when it has failed for good.
	connectionLost() bool
	// stats returns the connection's counters.
	stats() ResumeStats
}

// connReconnecting reports whether the session runs over a resumable
// connection that is being re-established ([StateReconnecting]).
func (s *Session) connReconnecting() bool {
	r, ok := s.conn.(resumer)
	if !ok {
		return false
	}
	rec, _ := r.resumeState()
	return rec
}

// keepaliveResume is the keepalive's hook: over a resumable connection a
// missing keepalive answer means a lost connection, which the connection
// re-establishes, not the end of the session. It reports whether it took
// care of it (and re-armed the keepalive).
func (s *Session) keepaliveResume() bool {
	r, ok := s.conn.(resumer)
	if !ok || !r.connectionLost() {
		return false
	}
	s.mu.Lock()
	if s.err == nil && s.keepaliveTimer != nil {
		s.keepaliveTimer.Reset(s.cfg.KeepAliveInterval)
	}
	s.mu.Unlock()
	return true
}

// Reconnecting reports whether the session runs over a resumable
// connection ([DialResumable], [ResumeListener]) that is being
// re-established now, and returns a channel that is closed at the next
// change of that: when reconnecting begins, when it ends, and when the
// connection fails for good. Take the pair again after each change:
//
//	for {
//		rec, changed := sess.Reconnecting()
//		log.Println("reconnecting:", rec)
//		select {
//		case <-changed:
//		case <-sess.Done():
//			return
//		}
//	}
//
// For a session over any other connection it reports false and a nil
// channel, which never fires. It does not block and is safe for
// concurrent use.
func (s *Session) Reconnecting() (bool, <-chan struct{}) {
	r, ok := s.conn.(resumer)
	if !ok {
		return false, nil
	}
	return r.resumeState()
}

// ResumeStats counts what the resumption layer of one session did.
type ResumeStats struct {
	Reconnecting  bool   // the connection is being re-established now
	Reconnects    uint64 // times the connection was re-established
	Attempts      uint64 // client: connections dialed to reconnect, successful or not
	ReplayedBytes uint64 // bytes sent again after a reconnection
	Unacked       int    // bytes sent or buffered and not yet acknowledged by the peer
	BufferHeld    int    // memory the replay buffer holds now, in bytes
}

// ResumeStats returns the counters of the session's resumable connection,
// and false for a session over any other connection. It does not block
// for long and is safe for concurrent use.
func (s *Session) ResumeStats() (ResumeStats, bool) {
	r, ok := s.conn.(resumer)
	if !ok {
		return ResumeStats{}, false
	}
	return r.stats(), true
}
