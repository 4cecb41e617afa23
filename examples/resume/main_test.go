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

// TestDownloadSurvivesCuts runs the example end to end: three kills of the
// TCP connection during a 16 MiB download, each seen as a trip through
// StateReconnecting, and the download completes with the right checksum.
func TestDownloadSurvivesCuts(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-mib", "16", "-cuts", "3", "-outage", "100ms"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"session open", "sha256 ok, 3 reconnections", "killing the TCP connection"} {
		if !strings.Contains(s, want) {
			t.Errorf("output does not contain %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "state: reconnecting"); n != 3 {
		t.Errorf("%d reconnecting states printed; want 3:\n%s", n, s)
	}
	if n := strings.Count(s, "state: open"); n != 3 {
		t.Errorf("%d open states printed; want 3:\n%s", n, s)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-mib", "0"}, {"-cuts", "-1"}, {"-nosuchflag"}} {
		if err := run(t.Context(), args, io.Discard); err == nil {
			t.Errorf("run(%q) = nil; want an error", args)
		}
	}
}
