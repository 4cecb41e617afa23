package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
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

func TestOneProcess(t *testing.T) {
	var out bytes.Buffer
	// More than a window's worth per stream, so flow control is exercised.
	err := run(testContext(t), []string{"-streams", "50", "-size", "300000"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if want := "echoed 50 streams x 300000 bytes over 1 TCP connection"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q does not contain %q", out.String(), want)
	}
}

// TestTwoProcesses runs the -listen and -connect modes side by side, the way
// two processes would, and then stops the server as Ctrl-C would.
func TestTwoProcesses(t *testing.T) {
	ctx := testContext(t)
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()

	pr, pw := io.Pipe()
	srvErr := make(chan error, 1)
	go func() {
		err := run(srvCtx, []string{"-listen", "127.0.0.1:0"}, pw)
		pw.Close()
		srvErr <- err
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		t.Fatalf("server printed nothing; err %v", <-srvErr)
	}
	addr, ok := strings.CutPrefix(lines.Text(), "listening on ")
	if !ok {
		t.Fatalf("first server line %q; want listening on ADDR", lines.Text())
	}
	go io.Copy(io.Discard, pr) // the server writes nothing more, but never let it block

	// Two clients, one after the other, over two TCP connections.
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"-connect", addr, "-streams", "20", "-size", "1000"}, &out); err != nil {
			t.Fatalf("client: %v", err)
		}
		if !strings.Contains(out.String(), "echoed 20 streams x 1000 bytes") {
			t.Errorf("client output %q", out.String())
		}
	}
	stopServer()
	if err := <-srvErr; err != nil {
		t.Errorf("server returned %v after its context ended; want nil", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "127.0.0.1:0", "-connect", "127.0.0.1:1"},
		{"-streams", "0"},
		{"-nosuchflag"},
	} {
		if err := run(t.Context(), args, io.Discard); err == nil {
			t.Errorf("run(%q) = nil; want an error", args)
		}
	}
}

func TestPayloadsDiffer(t *testing.T) {
	if bytes.Equal(payload(1, 100), payload(2, 100)) {
		t.Error("payloads of streams 1 and 2 are equal; a crossed reply would go unnoticed")
	}
}
