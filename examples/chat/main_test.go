package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
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

var idRE = regexp.MustCompile(`key ID ([a-z2-7]{52})`)

// TestOneProcess: the conversation prints in order, and each side sees
// the other's key ID.
func TestOneProcess(t *testing.T) {
	var out bytes.Buffer
	if err := run(testContext(t), nil, strings.NewReader(""), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	// The client's "connected" line and the server's race; the rest is in
	// order, since every message is a SendAck.
	want := []string{
		"bob: alice joined",
		`bob: alice says "hello"`,
		`alice: bob says "I heard \"hello\""`,
		`bob: alice says "how are you?"`,
		`alice: bob says "I heard \"how are you?\""`,
		`bob: alice says "bye"`,
		`alice: bob says "I heard \"bye\""`,
		"bob: alice left",
		"bob: alice disconnected",
	}
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w+"\n")
		if i < 0 {
			t.Fatalf("output lacks %q (in order):\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
	ids := map[string]string{}
	for _, prefix := range []string{"bob: listening on", "alice: connected to bob", "bob: alice connected"} {
		line := lineWith(got, prefix)
		m := idRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no key ID on the line %q:\n%s", prefix, got)
		}
		ids[prefix] = m[1]
	}
	if ids["bob: listening on"] != ids["alice: connected to bob"] {
		t.Errorf("alice saw bob's key ID %s; bob printed %s", ids["alice: connected to bob"], ids["bob: listening on"])
	}
	if ids["bob: alice connected"] == ids["bob: listening on"] {
		t.Error("alice and bob have the same key ID")
	}
}

func lineWith(out, prefix string) string {
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// startListener runs -listen with args and returns its address and key
// ID; the listener stops at cleanup.
func startListener(t *testing.T, args ...string) (addr, id string, output func() string) {
	t.Helper()
	ctx, stop := context.WithCancel(testContext(t))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), strings.NewReader(""), pw)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("listener printed nothing; err %v", <-done)
	}
	m := regexp.MustCompile(`listening on (\S+), key ID (\S+)$`).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("first listener line %q; want listening on ADDR, key ID ID", sc.Text())
	}
	var rest bytes.Buffer
	copied := make(chan struct{})
	go func() {
		for sc.Scan() {
			fmt.Fprintln(&rest, sc.Text())
		}
		close(copied)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("listener returned %v after its context ended; want nil", err)
		}
		<-copied
	})
	return m[1], m[2], func() string { stop(); <-copied; return rest.String() }
}

// TestTwoProcesses runs -listen and -connect the way two processes would:
// the client pins the key ID the listener printed and sends stdin.
func TestTwoProcesses(t *testing.T) {
	addr, id, listenerOutput := startListener(t)
	var out bytes.Buffer
	err := run(testContext(t), []string{"-connect", addr, "-peer", id, "-name", "carol"}, strings.NewReader("first line\n\nsecond line\n"), &out)
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"carol: connected to bob, key ID " + id + " (pinned)",
		`carol: bob says "I heard \"first line\""`,
		`carol: bob says "I heard \"second line\""`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("client output lacks %q:\n%s", want, out.String())
		}
	}
	lout := listenerOutput()
	for _, want := range []string{"bob: carol connected, key ID ", "bob: carol joined", `bob: carol says "second line"`, "bob: carol left"} {
		if !strings.Contains(lout, want) {
			t.Errorf("listener output lacks %q:\n%s", want, lout)
		}
	}
}

// TestPinning: a client that pins another key ID does not connect, and a
// listener with -allow lets in only the peers it names.
func TestPinning(t *testing.T) {
	addr, id, _ := startListener(t, "-allow", strings.Repeat("a", 52))
	wrong := strings.Repeat("b", 52)
	err := run(testContext(t), []string{"-connect", addr, "-peer", wrong}, strings.NewReader("hi\n"), io.Discard)
	if !errors.Is(err, errUnexpectedPeer) {
		t.Errorf("a client pinning another key ID: %v; want a refused handshake", err)
	}
	// The right pin, but a key the listener does not allow: with TLS 1.3
	// the refusal reaches the client on its first message.
	err = run(testContext(t), []string{"-connect", addr, "-peer", id}, strings.NewReader("hi\n"), io.Discard)
	if err == nil {
		t.Error("a client whose key is not allowed got its messages through")
	}
	t.Logf("client with a key not allowed: %v", err)
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "127.0.0.1:0", "-connect", "127.0.0.1:1"},
		{"-connect", "127.0.0.1:1"}, // no -peer
		{"-nosuchflag"},
	} {
		if err := run(t.Context(), args, strings.NewReader(""), io.Discard); err == nil {
			t.Errorf("run(%q) = nil; want an error", args)
		}
	}
}
