package yamux

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// Errors returned by this package. Compare with [errors.Is]; several can be
// true of one error (a stream cut off by a keepalive failure is both
// [ErrSessionShutdown] and [ErrKeepAliveTimeout]).
var (
	// ErrSessionShutdown is returned by every blocked or later call on a
	// session that has ended, and on its streams. It wraps [net.ErrClosed]
	// so that servers looping on [Session.Accept] stop the usual way. The
	// error returned alongside it also wraps the cause (see [Session.Err]).
	ErrSessionShutdown error = shutdownError{}

	// ErrLocalClose is the cause ([Session.Err]) of a session ended by
	// [Session.Close] or [Session.Shutdown].
	ErrLocalClose = errors.New("yamux: session closed locally")

	// ErrProtocol is wrapped by every error caused by a peer that broke the
	// wire protocol. The session answers with GoAway(protocol error) and ends.
	ErrProtocol = errors.New("yamux: protocol error")

	// ErrInvalidVersion: the peer sent a header with a version other than 0.
	// It wraps [ErrProtocol].
	ErrInvalidVersion = fmt.Errorf("%w: invalid version", ErrProtocol)

	// ErrInvalidType: the peer sent a header with an unknown frame type.
	// It wraps [ErrProtocol].
	ErrInvalidType = fmt.Errorf("%w: invalid frame type", ErrProtocol)

	// ErrRecvWindowExceeded: the peer sent more data than the window it was
	// granted. It wraps [ErrProtocol].
	ErrRecvWindowExceeded = fmt.Errorf("%w: receive window exceeded", ErrProtocol)

	// ErrStreamReset is returned by Read and Write on a stream that was
	// reset, by either end. A stream reset is not a session error.
	ErrStreamReset = errors.New("yamux: stream reset")

	// ErrStreamClosed is returned by Read and Write after [Stream.Close],
	// and by Write after [Stream.CloseWrite].
	ErrStreamClosed = errors.New("yamux: stream closed")

	// ErrRemoteGoAway is returned by OpenStream after the peer sent GoAway.
	// An [*GoAwayError] with Remote set is in the same chain.
	ErrRemoteGoAway = errors.New("yamux: remote end sent GoAway")

	// ErrLocalGoAway is returned by OpenStream after this end sent GoAway.
	ErrLocalGoAway = errors.New("yamux: GoAway was sent, no new streams")

	// ErrStreamsExhausted: this end has used every stream ID of its parity.
	ErrStreamsExhausted = errors.New("yamux: stream IDs exhausted")

	// ErrReceiveBufferFull: opening one more stream would take the sum of
	// receive windows past [Config.MaxReceiveBuffer].
	ErrReceiveBufferFull = errors.New("yamux: receive buffer budget exhausted")

	// ErrStreamOpenTimeout: the peer did not acknowledge a stream we opened
	// within [Config.StreamOpenTimeout]. The stream is reset, so the error
	// also matches [ErrStreamReset]; the session stays up.
	ErrStreamOpenTimeout error = openTimeoutError{}

	// ErrKeepAliveTimeout: a keepalive ping was not answered in time and
	// the session was closed.
	ErrKeepAliveTimeout = errors.New("yamux: keepalive timeout")

	// ErrConnectionWriteTimeout: a write to the connection made no progress
	// within [Config.ConnectionWriteTimeout]; the session was closed.
	ErrConnectionWriteTimeout = errors.New("yamux: connection write timeout")

	// ErrInvalidConfig is wrapped by every error from [VerifyConfig].
	ErrInvalidConfig = errors.New("yamux: invalid config")

	// ErrTimeout is returned when a deadline set with SetDeadline,
	// SetReadDeadline or SetWriteDeadline passes. It is a [net.Error] whose
	// Timeout method reports true, and it wraps [os.ErrDeadlineExceeded].
	ErrTimeout error = timeoutError{}
)

// shutdownError is ErrSessionShutdown: it is net.ErrClosed for errors.Is
// without repeating net.ErrClosed's text before the real cause.
type shutdownError struct{}

func (shutdownError) Error() string { return "yamux: session shutdown" }
func (shutdownError) Unwrap() error { return net.ErrClosed }

// openTimeoutError is ErrStreamOpenTimeout: a reset with its own cause.
type openTimeoutError struct{}

func (openTimeoutError) Error() string { return "yamux: stream open timed out" }
func (openTimeoutError) Unwrap() error { return ErrStreamReset }

type timeoutError struct{}

func (timeoutError) Error() string   { return "yamux: i/o deadline exceeded" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true } // net.Error still requires it
func (timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

var _ net.Error = timeoutError{}

// GoAwayCode is the reason carried by a GoAway frame (spec.md §6).
type GoAwayCode uint32

// GoAway codes defined by the protocol.
const (
	GoAwayNormal        GoAwayCode = 0
	GoAwayProtocolError GoAwayCode = 1
	GoAwayInternalError GoAwayCode = 2
)

// String names the code: "normal", "protocol error", "internal error".
func (c GoAwayCode) String() string {
	switch c {
	case GoAwayNormal:
		return "normal"
	case GoAwayProtocolError:
		return "protocol error"
	case GoAwayInternalError:
		return "internal error"
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// GoAwayError describes a GoAway frame: sent by the peer when Remote is
// true, by us otherwise. Use [errors.As] to read the code from a session's
// error.
type GoAwayError struct {
	Code   GoAwayCode
	Remote bool
}

// Error describes the GoAway and who sent it.
func (e *GoAwayError) Error() string {
	if e.Remote {
		return "yamux: remote sent GoAway (" + e.Code.String() + ")"
	}
	return "yamux: sent GoAway (" + e.Code.String() + ")"
}

// Is reports whether target is a *GoAwayError with the same Code and Remote,
// or [ErrRemoteGoAway] for a remote one.
func (e *GoAwayError) Is(target error) bool {
	if t, ok := target.(*GoAwayError); ok {
		return *t == *e
	}
	return e.Remote && target == ErrRemoteGoAway
}

// sessionError is what calls on a dead session return: it is
// [ErrSessionShutdown] and its cause at once.
func sessionError(cause error) error {
	if cause == nil || errors.Is(cause, ErrSessionShutdown) {
		return ErrSessionShutdown
	}
	return fmt.Errorf("%w: %w", ErrSessionShutdown, cause)
}
