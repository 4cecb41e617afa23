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

// TestGRPCAndRawStreams runs unary, server-streaming and bidirectional
// calls while raw streams are echoed on the same session; every reply is
// checked inside runLocal.
func TestGRPCAndRawStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := runLocal(ctx, 200, 8, 8)
	if err != nil {
		t.Fatalf("runLocal: %v", err)
	}
	want := result{unary: 200, streamed: 100, bidi: 100, raw: 8}
	if res != want {
		t.Errorf("runLocal = %+v; want %+v", res, want)
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-n", "20", "-raw", "2"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.HasPrefix(out.String(), "20 unary calls, 100 streamed replies, 100 bidi echoes and 2 raw streams over 1 TCP connection") {
		t.Errorf("output %q", out.String())
	}
}

// TestBench runs the -bench mode briefly: every transport must complete
// calls. No numbers are checked.
func TestBench(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-bench", "-d", "100ms", "-c", "4"}, &out); err != nil {
		t.Fatalf("run -bench: %v", err)
	}
	for _, tr := range transports {
		if !strings.Contains(out.String(), tr.name) {
			t.Errorf("-bench output has no line for %s:\n%s", tr.name, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	if err := run(t.Context(), []string{"-c", "0"}, io.Discard); err == nil {
		t.Error("run(-c 0) = nil; want an error")
	}
}
