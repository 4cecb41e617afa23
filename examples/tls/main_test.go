package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"slices"
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

func TestServerSeesClientCN(t *testing.T) {
	const cn = "test-client-42"
	p, err := newPKI(cn)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	seen, err := runLocal(testContext(t), p.serverConfig(), p.clientConfig(), 20, &syncWriter{w: &out})
	if err != nil {
		t.Fatalf("runLocal: %v\n%s", err, out.String()) // echo content is checked inside
	}
	if !slices.Equal(seen, []string{cn}) {
		t.Errorf("server verified client CNs %q; want [%q]", seen, cn)
	}
}

// TestUntrustedClientsRejected checks that the server really requires and
// verifies client certificates: a client without one, or with one from
// another CA, gets no stream through.
func TestUntrustedClientsRejected(t *testing.T) {
	p, err := newPKI("trusted")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newPKI("intruder")
	if err != nil {
		t.Fatal(err)
	}
	noCert := p.clientConfig()
	noCert.Certificates = nil
	otherCA := p.clientConfig()
	otherCA.Certificates = other.clientConfig().Certificates

	for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "other CA": otherCA} {
		t.Run(name, func(t *testing.T) {
			// With TLS 1.3 the client's handshake finishes before the
			// server has checked its certificate, so the refusal shows
			// up as the session failing under the first stream.
			seen, err := runLocal(testContext(t), p.serverConfig(), cfg, 1, io.Discard)
			if err == nil {
				t.Error("client echoed over the session; want an error")
			}
			t.Logf("client error: %v", err)
			if len(seen) != 0 {
				t.Errorf("server accepted client CNs %q; want none", seen)
			}
		})
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(testContext(t), []string{"-cn", "alice", "-streams", "5"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{`server: client certificate verified, CN="alice"`, "client: echoed 5 streams"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not contain %q", out.String(), want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	if err := run(t.Context(), []string{"-streams", "0"}, io.Discard); err == nil {
		t.Error("run(-streams 0) = nil; want an error")
	}
}
