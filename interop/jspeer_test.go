package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
)

// The js-libp2p peer is js/peer.mjs: @chainsafe/libp2p-yamux 8.0.1, the
// yamux of js-libp2p, on @libp2p/utils 7.4.1, over a plain TCP socket, run
// by Node (20 or newer) as a child process. Its npm packages are pinned in
// js/package.json and js/package-lock.json and installed by the first test
// that needs them (npm ci, once per test process, only when
// js/node_modules is missing or was made from other package files). A
// missing node or npm fails the tests; it never skips them.
//
// The peer cannot be driven call by call like the Go peers (the mux
// adapter of mux_test.go), so its scenarios are its own (js_test.go,
// js_control_test.go): as a server it serves commands sent on each stream
// (echo, halfclose, reset, watch, goaway, close, abort, flood, ping); as a
// client it runs one named scenario. Either way it reports what its end
// saw as JSON lines on stdout, which the tests parse and assert on.
//
// Behaviour the scenarios rely on (read from its source, and seen in these
// tests; spec.md §12 has the full list):
//   - It opens streams without limit on how many await our ACK (its limit
//     is 1,000 open streams each way, and it has no open timeout), and
//     acknowledges a stream it accepted only with the first frame it sends
//     on it.
//   - It returns window credit as soon as a Data frame arrives, one
//     WindowUpdate per frame; only pausing a stream stops the credit, and a
//     paused stream is reset once 4 MiB wait unread, although its window
//     grows to 16 MiB (js/peer.mjs raises that buffer to 16 MiB).
//   - GoAway(normal) received: every stream of its ends at once, reading
//     as a clean end, with neither FIN nor RST sent; its muxer is closed
//     (no new streams, no pings) but the connection stays open, and it
//     still answers pings. Its own GoAway comes only with close() (after FIN
//     on every stream) or abort(err) (after RST on every stream; the code
//     is normal even then, a bug); js/peer.mjs sends one alone through the
//     muxer's private sendGoAway.
//   - RST received: reads fail with StreamResetError, sends with
//     StreamStateError. stream.abort(err) sends RST; stream.close() sends
//     FIN.
//   - Ping: one at a time (concurrent pings share it), round trips in
//     whole milliseconds; an answer to a ping it gave up on is a protocol
//     error that ends the session.

// jsDir is the directory of the JS peer, relative to this package.
const jsDir = "js"

// jsMinNode is the oldest Node major version the peer runs on.
const jsMinNode = 20

// jsStamp, in node_modules, holds the checksum of the package files that
// the installed modules were made from.
const jsStamp = ".yamux-interop-stamp"

var (
	jsOnce sync.Once
	jsNode string // path of node
	jsErr  error  // why the peer cannot run; the tests fail with it
)

// jsSetup fails the test unless node and npm are installed and the
// peer's packages are in place, installing them on first use.
func jsSetup(t *testing.T) string {
	t.Helper()
	jsOnce.Do(func() { jsNode, jsErr = installJS() })
	if jsErr != nil {
		t.Fatalf("the JS interop peer cannot run: %v", jsErr)
	}
	return jsNode
}

// installJS finds node (version 20 or newer) and npm, and runs npm ci in
// jsDir when node_modules is missing or stale.
func installJS() (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("the interop tests with js-libp2p need Node.js %d or newer: node is not in PATH: %w", jsMinNode, err)
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", node, err)
	}
	v := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < jsMinNode {
		return "", fmt.Errorf("node %s is too old: the interop tests with js-libp2p need Node.js %d or newer", v, jsMinNode)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("the interop tests with js-libp2p need npm to install their packages: npm is not in PATH: %w", err)
	}
	// The script itself is run by node, not opened here; stat it so that
	// go test's cache notices when it changes.
	if _, err := os.Stat(filepath.Join(jsDir, "peer.mjs")); err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(jsDir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	want := hex.EncodeToString(h.Sum(nil))
	stamp := filepath.Join(jsDir, "node_modules", jsStamp)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		return node, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = jsDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in interop/%s: %w\n%s", jsDir, err, out)
	}
	return node, os.WriteFile(stamp, []byte(want), 0o644)
}

// jsEvent is one JSON line of the peer's stdout. Which fields are set
// depends on Event; see js/peer.mjs.
type jsEvent struct {
	Event      string         `json:"event"`
	Port       int            `json:"port"`
	Stream     uint32         `json:"stream"`
	Bytes      int64          `json:"bytes"`
	SHA256     string         `json:"sha256"`
	EchoBytes  int64          `json:"echoBytes"`
	EchoSHA256 string         `json:"echoSha256"`
	Read       string         `json:"read"`   // how a read ended: "eof" or an error name
	Send       string         `json:"send"`   // what a send did: "ok" or an error name
	Open       string         `json:"open"`   // what opening a stream did
	Ping       string         `json:"ping"`   // what a ping did
	Status     string         `json:"status"` // the stream's status
	Muxer      string         `json:"muxer"`  // the muxer's status
	Reply      string         `json:"reply"`
	RTTs       []float64      `json:"rtts"` // milliseconds
	Counts     map[string]int `json:"counts"`
	Error      string         `json:"error"`
	Message    string         `json:"message"`
}

// eventLog collects the peer's stdout, parsed line by line.
type eventLog struct {
	mu      sync.Mutex
	partial []byte
	events  []jsEvent
	taken   []bool
	text    bytes.Buffer  // everything, for the test log
	changed chan struct{} // closed and replaced when an event arrives
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		var e jsEvent
		if err := json.Unmarshal(line, &e); err != nil || e.Event == "" {
			e = jsEvent{Event: "error", Message: fmt.Sprintf("unparsable line %q", line)}
		}
		l.events = append(l.events, e)
		l.taken = append(l.taken, false)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// jsPeer is one run of js/peer.mjs.
type jsPeer struct {
	args    []string
	cmd     *exec.Cmd
	events  *eventLog
	stderr  lockedBuffer
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited closes
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startJS runs node js/peer.mjs args. The process is killed (by its PID)
// when ctx ends or the test ends, whichever is first; if the test failed,
// its stdout and stderr go to the test log.
func startJS(t *testing.T, ctx context.Context, args ...string) *jsPeer {
	t.Helper()
	node := jsSetup(t)
	p := &jsPeer{args: args, events: newEventLog(), exited: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, node, append([]string{"peer.mjs"}, args...)...)
	p.cmd.Dir = jsDir
	p.cmd.Stdout = p.events
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = 2 * time.Second // bounds Wait if the pipes stay open
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
			// It should have exited with the connection; kill it by PID.
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("node peer.mjs %s: %v\nstdout:\n%s\nstderr:\n%s",
				strings.Join(args, " "), p.waitErr, p.events.text.String(), p.stderr.String())
		}
	})
	return p
}

// next returns the first event named name that next has not returned yet.
// It fails if the peer reports an error (or a stream-error) first, exits
// without the event, or ctx ends.
func (p *jsPeer) next(ctx context.Context, name string) (jsEvent, error) {
	for {
		l := p.events
		l.mu.Lock()
		for i, e := range l.events {
			if l.taken[i] {
				continue
			}
			if e.Event == name {
				l.taken[i] = true
				l.mu.Unlock()
				return e, nil
			}
			if e.Event == "error" || e.Event == "stream-error" {
				l.mu.Unlock()
				return e, fmt.Errorf("js peer reported %s: %s %s", e.Event, e.Error, e.Message)
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			// One more look: the last lines may have come with the exit.
			select {
			case <-changed:
				continue
			default:
			}
			return jsEvent{}, fmt.Errorf("js peer exited (%v) before reporting %q; stderr:\n%s", p.waitErr, name, p.stderr.String())
		case <-ctx.Done():
			return jsEvent{}, fmt.Errorf("waiting for the js peer to report %q: %w", name, ctx.Err())
		}
	}
}

// mustNext is next that fails the test.
func (p *jsPeer) mustNext(t *testing.T, ctx context.Context, name string) jsEvent {
	t.Helper()
	e, err := p.next(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// wait waits for the process to exit and fails the test unless it exited
// with status 0.
func (p *jsPeer) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatalf("js peer did not exit: %v", ctx.Err())
	}
	if p.waitErr != nil {
		t.Fatalf("js peer exited with %v; stderr:\n%s", p.waitErr, p.stderr.String())
	}
}

// dialJS starts the peer's server and connects our client session to it,
// with cfg (nil: the defaults). The session is closed when the test ends.
func dialJS(t *testing.T, ctx context.Context, cfg *yamux.Config) (*jsPeer, *yamux.Session) {
	t.Helper()
	p := startJS(t, ctx, "server")
	l := p.mustNext(t, ctx, "listening")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port)))
	if err != nil {
		t.Fatalf("dialing the js peer: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	sess, err := yamux.Client(conn, cfg)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	return p, sess
}

// serveJS starts the peer's client on scenario args and returns our server
// session on its connection. It is closed when the test ends.
func serveJS(t *testing.T, ctx context.Context, cfg *yamux.Config, args ...string) (*jsPeer, *yamux.Session) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	p := startJS(t, ctx, append([]string{"client", port}, args...)...)
	if d, ok := ctx.Deadline(); ok {
		ln.(*net.TCPListener).SetDeadline(d)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accepting the js peer's connection: %v; its stderr:\n%s", err, p.stderr.String())
	}
	t.Cleanup(func() { conn.Close() })
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	return p, sess
}

// openCmd opens a stream to the peer's server and sends the command line
// that tells it what to do with the stream. The stream's deadline is ctx's.
func openCmd(ctx context.Context, sess *yamux.Session, cmd string) (*yamux.Stream, error) {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := bound(ctx, st); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(st, cmd+"\n"); err != nil {
		return nil, fmt.Errorf("writing command %q: %w", cmd, err)
	}
	return st, nil
}

// mustOpenReady is openCmd for a command that answers "ready".
func mustOpenReady(t *testing.T, ctx context.Context, sess *yamux.Session, cmd string) *yamux.Stream {
	t.Helper()
	st, err := openCmd(ctx, sess, cmd)
	if err != nil {
		t.Fatalf("open %q: %v", cmd, err)
	}
	if err := expectLine(st, "ready"); err != nil {
		t.Fatalf("%q stream: %v", cmd, err)
	}
	return st
}

// readLine reads one line, without its '\n', a byte at a time so that
// nothing after it is consumed.
func readLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 1024 {
		if _, err := io.ReadFull(r, b); err != nil {
			return string(line), fmt.Errorf("reading a line after %q: %w", line, err)
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return string(line), fmt.Errorf("line too long: %q", line)
}

// expectLine reads a line and checks that it is want.
func expectLine(r io.Reader, want string) error {
	got, err := readLine(r)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("read line %q; want %q", got, want)
	}
	return nil
}

// writeLine writes s and a newline.
func writeLine(w io.Writer, s string) error {
	_, err := io.WriteString(w, s+"\n")
	return err
}

// hashes records, by stream ID, the SHA-256 of what our end received on
// each stream (written by handlers in their goroutines).
type hashes struct {
	mu sync.Mutex
	m  map[uint32]string
}

func (h *hashes) put(id uint32, sum []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[uint32]string)
	}
	h.m[id] = hex.EncodeToString(sum)
}

func (h *hashes) get(id uint32) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.m[id]
	return s, ok
}

// echoHashing copies everything st receives back to it, records the
// SHA-256 of it in hs, and half-closes st at the end.
func echoHashing(st *yamux.Stream, hs *hashes) error {
	h := sha256.New()
	w := bufio.NewWriterSize(st, 64<<10)
	if _, err := io.CopyBuffer(io.MultiWriter(w, h), st, make([]byte, 64<<10)); err != nil {
		return fmt.Errorf("echo on stream %d: %w", st.StreamID(), err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("echo on stream %d: %w", st.StreamID(), err)
	}
	hs.put(st.StreamID(), h.Sum(nil))
	return st.CloseWrite()
}

// acceptAll accepts streams on sess until it ends, each handled by handle
// in its own goroutine of g. Handler errors go to g; so does an Accept
// error other than the session's end.
func acceptAll(ctx context.Context, g *group, sess *yamux.Session, handle func(*yamux.Stream) error) {
	g.Go(func() error {
		for {
			st, err := sess.AcceptStream(ctx)
			if err != nil {
				if sess.IsClosed() || ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("AcceptStream: %w", err)
			}
			if err := bound(ctx, st); err != nil {
				return err
			}
			g.Go(func() error { return handle(st) })
		}
	})
}
