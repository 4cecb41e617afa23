package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestModes(t *testing.T) {
	const n = 200
	for _, tc := range []struct {
		mode    string
		streams int64 // streams the server must have accepted
	}{
		{streamPerCall, n},
		{streamPerConn, 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			res, err := runLocal(testContext(t), tc.mode, n, 4) // checks every sum
			if err != nil {
				t.Fatalf("runLocal: %v", err)
			}
			if res.calls != n {
				t.Errorf("%d calls succeeded; want %d", res.calls, n)
			}
			if res.streams != tc.streams {
				t.Errorf("server accepted %d streams; want %d", res.streams, tc.streams)
			}
		})
	}
}

// TestClosedClientsStop checks the rpcStream workaround: without it, a
// closed rpc.Client's reading goroutine often spins forever instead of
// exiting. Sequential calls close each client right after its reply, the
// moment the bug needs; without the workaround this test fails every time
// under -race, and now and then without it.
func TestClosedClientsStop(t *testing.T) {
	if _, err := runLocal(testContext(t), streamPerCall, 100, 1); err != nil {
		t.Fatalf("runLocal: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestRun(t *testing.T) {
	for _, mode := range []string{streamPerCall, streamPerConn} {
		var out bytes.Buffer
		if err := run(testContext(t), []string{"-mode", mode, "-n", "50"}, &out); err != nil {
			t.Fatalf("run -mode %s: %v", mode, err)
		}
		want := regexp.MustCompile(`^` + mode + `: 50 calls .* calls/s\n$`)
		if !want.MatchString(out.String()) {
			t.Errorf("output %q does not match %v", out.String(), want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-mode", "nosuchmode"}, {"-n", "0"}} {
		if err := run(t.Context(), args, io.Discard); err == nil {
			t.Errorf("run(%q) = nil; want an error", args)
		}
	}
}
