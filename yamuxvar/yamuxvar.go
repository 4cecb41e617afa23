// Package yamuxvar exposes yamux session statistics as expvar variables,
// served as JSON at /debug/vars by any http.Server that uses
// http.DefaultServeMux (importing expvar registers that handler, which is
// why this lives outside the yamux package).
//
//	yamuxvar.Publish("yamux", sess)
//
// For Prometheus, read the same numbers from Session.Stats in a
// prometheus.Collector's Collect method; see the README's Observability
// section. Neither this package nor yamux depends on a metrics library.
package yamuxvar

import (
	"expvar"

	"github.com/d5da5f0f/yamux"
)

// StatsSource is anything with session statistics: a *yamux.Session, or
// an aggregate of many that the caller writes.
type StatsSource interface {
	Stats() yamux.SessionStats
}

// Func returns an expvar.Func that reports src's statistics each time the
// variable is read (no polling, no goroutine).
func Func(src StatsSource) expvar.Func {
	return func() any { return Map(src.Stats()) }
}

// Publish registers src's statistics under name. Like expvar.Publish it
// panics if name is already registered, so call it once per name.
func Publish(name string, src StatsSource) {
	expvar.Publish(name, Func(src))
}

// Map flattens a stats snapshot into the JSON object expvar serves; keys
// are snake_case, durations in seconds, times in Unix seconds.
func Map(st yamux.SessionStats) map[string]any {
	m := map[string]any{
		"bytes_sent":       st.BytesSent,
		"bytes_received":   st.BytesReceived,
		"frames_sent":      st.FramesSent,
		"frames_received":  st.FramesReceived,
		"streams_opened":   st.StreamsOpened,
		"streams_accepted": st.StreamsAccepted,
		"streams_reset":    st.StreamsReset,
		"streams_refused":  st.StreamsRefused,
		"active_streams":   st.ActiveStreams,
		"rtt_seconds":      st.LastRTT.Seconds(),
		"state":            st.State.String(),
	}
	if !st.LastFrameReceived.IsZero() {
		m["last_frame_unix"] = float64(st.LastFrameReceived.UnixNano()) / 1e9
	}
	return m
}
