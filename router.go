package yamux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// This file is the optional named-streams layer described in spec.md §9: a
// preface on each stream, written by the opener ([Session.OpenNamed]) and
// read by the acceptor ([Router]). It runs entirely inside stream payloads;
// the yamux framing is unchanged.

// Errors of the named-streams layer.
var (
	// ErrUnknownStreamName is returned by [Session.OpenNamed] and
	// [Pool.OpenNamed] when the peer's [Router] has no handler for the
	// name. The stream has been reset.
	ErrUnknownStreamName = errors.New("yamux: unknown stream name")

	// ErrInvalidStreamName is returned by [Session.OpenNamed] and
	// [Pool.OpenNamed] for a name that is empty, longer than 255 bytes,
	// or reserved (first byte 0, spec.md §10); no stream is opened.
	ErrInvalidStreamName = errors.New("yamux: invalid stream name")

	// ErrBadStreamPreface is returned by [Session.OpenNamed] and
	// [Pool.OpenNamed] when the peer answered the name preface with
	// something other than a status byte defined in spec.md §9: a status
	// it calls malformed, an undefined status, or the end of the stream.
	// The stream has been reset.
	ErrBadStreamPreface = errors.New("yamux: bad stream name preface")
)

// Preface status bytes (spec.md §9).
const (
	prefaceOK        byte = 0 // the acceptor runs the named handler
	prefaceUnknown   byte = 1 // no handler has that name: FIN, then RST
	prefaceMalformed byte = 2 // a zero length: FIN, then RST

	maxStreamName         = 255
	defaultPrefaceTimeout = 10 * time.Second
)

// aLongTimeAgo is a deadline in the past: setting it fails blocked calls now.
var aLongTimeAgo = time.Unix(1, 0)

var _ StreamHandler = (*Router)(nil)

// Router is a [StreamHandler] that dispatches each stream to the handler
// registered under the name the opener wrote in the stream's preface
// (spec.md §9): [Session.OpenNamed] or [Pool.OpenNamed] on the other end. A
// stream whose name has no handler is answered with the "unknown" status
// and reset, so the opener's OpenNamed fails with [ErrUnknownStreamName].
// A stream whose preface does not arrive within PrefaceTimeout is reset,
// so a silent or slow opener cannot hold the goroutine.
//
// It also receives messages ([Router.HandleMessage], spec.md §10): each is
// a stream with a reserved name, read whole within MaxMessageSize,
// MaxConcurrentMessages and MessageTimeout, then handed to the channel's
// function; [Router.Stats] counts what was delivered and refused.
//
// Use it as [SessionServer.Handler], or call ServeStream from your own
// accept loop. Handle, HandleFunc and HandleMessage may be called at any
// time, also while streams are served; all methods are safe for
// concurrent use. Set the fields before the first stream is served. The
// zero value is an empty router.
type Router struct {
	// PrefaceTimeout bounds the wait for the opener's preface (length byte
	// and name) on each stream; when it passes, the stream is reset. Zero
	// means 10s; negative means no limit.
	PrefaceTimeout time.Duration

	// MaxMessageSize is the largest message, in bytes, that the handlers
	// registered with [Router.HandleMessage] accept (spec.md §10). A
	// message announcing a larger length is refused from its header, with
	// RST, before any of it is read, and counted in
	// RouterStats.MessagesTooLarge; the sender's Send returns
	// [ErrMessageTooLarge]. Zero or negative means 1 MiB; the format
	// allows at most 4 GiB - 1.
	MaxMessageSize int

	// MaxConcurrentMessages caps the messages being read or handled at
	// once, over all the sessions the Router serves. A message beyond it
	// waits, unread: its bytes stay in its stream's receive window
	// (spec.md §4) and its sender's Send waits, so that messages hold at
	// most MaxConcurrentMessages × MaxMessageSize bytes besides the
	// windows. A message keeps its slot until its handler returns. Zero
	// or negative means 64. Read once, at the first message (or
	// [Router.Stats]): set it before.
	MaxConcurrentMessages int

	// MessageTimeout bounds the reading of one message once it has a
	// slot: if its last byte and FIN have not arrived by then, the stream
	// is reset and the message dropped (counted in
	// RouterStats.MessagesAbandoned). Zero means 30s; negative means no
	// limit.
	MessageTimeout time.Duration

	mu       sync.RWMutex
	handlers map[string]StreamHandler

	slotsOnce sync.Once
	slots     chan struct{} // MaxConcurrentMessages tokens; made by messageSlots
	msgStats  messageCounters
}

// Handle registers h for streams named name. It panics, like
// http.ServeMux.Handle, when name is empty, longer than 255 bytes or
// reserved (its first byte is 0, spec.md §10: the namespace of
// [Router.HandleMessage]), when h is nil, or when name already has a
// handler: those are programming errors.
func (r *Router) Handle(name string, h StreamHandler) {
	if err := checkStreamName(name); err != nil {
		panic(err)
	}
	if h == nil {
		panic("yamux: Router.Handle: nil handler for " + name)
	}
	r.register(name, h)
}

// register adds h under name, panicking when name is taken.
func (r *Router) register(name string, h StreamHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handlers == nil {
		r.handlers = make(map[string]StreamHandler)
	}
	if _, dup := r.handlers[name]; dup {
		panic(fmt.Sprintf("yamux: Router: name registered twice: %q", name))
	}
	r.handlers[name] = h
}

// HandleFunc registers f for streams named name; see [Router.Handle].
func (r *Router) HandleFunc(name string, f func(st *Stream)) {
	if f == nil {
		panic("yamux: Router.HandleFunc: nil handler for " + name)
	}
	r.Handle(name, StreamHandlerFunc(f))
}

// ServeStream reads the preface of st, within PrefaceTimeout, and runs the
// handler registered for its name, which then reads what the opener wrote
// after the preface. It blocks until that handler returns. When the
// preface does not arrive in time or is cut off, st is reset; when it is
// malformed or names no handler, the matching status is written, followed
// by FIN and RST. It never closes st after a handler returns: a
// [SessionServer] does that. A message stream (spec.md §10) it reads,
// answers and closes itself, and it returns when the message's handler
// has returned.
func (r *Router) ServeStream(st *Stream) {
	var buf [1 + maxStreamName]byte
	st.SetReadDeadline(deadlineIn(r.prefaceTimeout()))
	_, err := io.ReadFull(st, buf[:1])
	n := int(buf[0])
	if err == nil && n > 0 {
		_, err = io.ReadFull(st, buf[1:1+n])
	}
	if err != nil {
		st.sess.logger.Debug("yamux: no stream name preface; resetting", "stream", st.id, "err", err)
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	if n == 0 {
		refuseStream(st, prefaceMalformed)
		return
	}
	name := string(buf[1 : 1+n])
	r.mu.RLock()
	h := r.handlers[name]
	r.mu.RUnlock()
	if h == nil {
		st.sess.logger.Debug("yamux: unknown stream name; resetting", "stream", st.id, "name", name)
		refuseStream(st, prefaceUnknown)
		return
	}
	if mh, ok := h.(*messageHandler); ok {
		mh.ServeStream(st) // answers the preface with the message (spec.md §10)
		return
	}
	if _, err := st.Write([]byte{prefaceOK}); err != nil {
		st.Reset()
		return
	}
	h.ServeStream(st)
}

// refuseStream answers with status, then FIN, then RST. The FIN makes the
// status survive the RST on the opener's side (spec.md §3.4: data before a
// FIN stays readable); the RST stops an opener that keeps writing.
func refuseStream(st *Stream, status byte) {
	if _, err := st.Write([]byte{status}); err == nil {
		st.CloseWrite()
	}
	st.Reset()
}

func checkStreamName(name string) error {
	if len(name) == 0 || len(name) > maxStreamName {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrInvalidStreamName, len(name), maxStreamName)
	}
	if strings.HasPrefix(name, reservedNamePrefix) {
		return fmt.Errorf("%w: %q is reserved (first byte 0)", ErrInvalidStreamName, name)
	}
	return nil
}

// OpenNamed opens a stream for the handler registered under name in the
// peer's [Router]: it opens the stream, writes the name preface and waits
// for the peer's one-byte answer (one round trip, spec.md §9), so that an
// unknown name fails here rather than on a later Read. The returned stream
// carries the handler's protocol from then on. It blocks until the answer
// arrives or ctx ends, and returns [ErrInvalidStreamName] (no stream is
// opened), the errors of [Session.OpenStream], [ErrUnknownStreamName],
// [ErrBadStreamPreface], ctx.Err(), [ErrStreamReset] (the peer reset the
// stream without an answer: it timed out, or is not a Router), or an error
// wrapping [ErrSessionShutdown]. On error the stream is reset. It is safe
// for concurrent use.
func (s *Session) OpenNamed(ctx context.Context, name string) (*Stream, error) {
	if err := checkStreamName(name); err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := selectStreamName(ctx, st, name); err != nil {
		st.Reset()
		return nil, err
	}
	return st, nil
}

// OpenNamed is [Session.OpenNamed] on the pooled session for addr: it
// opens a stream with [Pool.OpenStream] and selects name on it. It returns
// the errors of both. It is safe for concurrent use.
func (p *Pool) OpenNamed(ctx context.Context, addr, name string) (*Stream, error) {
	if err := checkStreamName(name); err != nil {
		return nil, err
	}
	st, err := p.OpenStream(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := selectStreamName(ctx, st, name); err != nil {
		st.Reset()
		return nil, err
	}
	return st, nil
}

// selectStreamName writes the preface for name on st and reads the
// answer, giving up when ctx ends.
func selectStreamName(ctx context.Context, st *Stream, name string) error {
	preface := make([]byte, 1+len(name))
	preface[0] = byte(len(name))
	copy(preface[1:], name)

	// ctx ending fails the blocked Write or Read through a past deadline.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		st.SetDeadline(aLongTimeAgo)
		close(fired)
	})
	var status [1]byte
	_, err := st.Write(preface)
	if err == nil {
		_, err = io.ReadFull(st, status[:])
	}
	if !stop() {
		<-fired
		return ctx.Err()
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: stream ended before the answer: %w", ErrBadStreamPreface, io.ErrUnexpectedEOF)
	case err != nil:
		return err
	case status[0] == prefaceOK:
		return nil
	case status[0] == prefaceUnknown:
		return fmt.Errorf("%w: %q", ErrUnknownStreamName, name)
	case status[0] == prefaceMalformed:
		return fmt.Errorf("%w: the peer called it malformed", ErrBadStreamPreface)
	}
	return fmt.Errorf("%w: undefined status %d", ErrBadStreamPreface, status[0])
}
