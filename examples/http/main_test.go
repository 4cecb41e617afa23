package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOneTCPConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const n, c = 100, 10
	st, err := runLocal(ctx, n, c) // every response body is checked inside
	if err != nil {
		t.Fatalf("runLocal: %v", err)
	}
	if st.requests != n {
		t.Errorf("%d requests answered; want %d", st.requests, n)
	}
	if st.tcpConns != 1 {
		t.Errorf("server accepted %d TCP connections; want 1", st.tcpConns)
	}
	// At most one stream per request, at least one; with keep-alive
	// streams are reused, so usually about c.
	if st.streams < 1 || st.streams > n {
		t.Errorf("client opened %d streams; want 1..%d", st.streams, n)
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-n", "30", "-c", "3"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "over 1 TCP connection(s)") || !strings.HasPrefix(out.String(), "30 requests over ") {
		t.Errorf("output %q", out.String())
	}
}

func TestBadFlags(t *testing.T) {
	if err := run(t.Context(), []string{"-c", "0"}, io.Discard); err == nil {
		t.Error("run(-c 0) = nil; want an error")
	}
}
