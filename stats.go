package yamux

import "sync/atomic"

// sessionCounters are the session's event counters; atomics, so that the
// hot paths never take a lock to count.
type sessionCounters struct {
	streamsRefused atomic.Uint64 // SYNs answered with RST by the limits
}
