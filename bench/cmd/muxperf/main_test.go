package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if a session, server or sampler goroutine outlives
// the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tiny are flags that make every test take milliseconds.
var tiny = []string{"-d", "20ms", "-size", "4KiB", "-streams", "8", "-stream-size", "16KiB", "-conc", "8", "-idle", "200"}

// columnsPerImpl is the number of table columns with every test: bulk,
// streams, rpc calls/s, rpc p99, idle.
const columnsPerImpl = 5

func args(extra ...string) []string { return append(append([]string(nil), tiny...), extra...) }

// parseTable returns the table's cells by implementation, checking that
// every row has a cell per column.
func parseTable(t *testing.T, out string) map[string][]string {
	t.Helper()
	return parseTableN(t, out, columnsPerImpl)
}

// parseTableN is parseTable for a table of cols columns per row.
func parseTableN(t *testing.T, out string, cols int) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	inTable := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "impl":
			inTable = true
		case inTable && len(f) == 0:
			inTable = false // the legend follows
		case inTable && len(f) > 0:
			if len(f) != cols+1 {
				t.Errorf("table row %q: %d cells, want %d", line, len(f)-1, cols)
			}
			rows[f[0]] = f[1:]
		}
	}
	return rows
}

// positive reports whether cell is a positive number or duration.
func positive(cell string) bool {
	if x, err := strconv.ParseFloat(cell, 64); err == nil {
		return x > 0
	}
	d, err := time.ParseDuration(cell)
	return err == nil && d > 0
}

// checkRow checks one implementation's cells: positive everywhere, except
// "-" for raw TCP's idle column.
func checkRow(t *testing.T, impl string, cells []string) {
	t.Helper()
	for i, cell := range cells {
		if impl == "tcp" && i == columnsPerImpl-1 {
			if cell != "-" {
				t.Errorf("tcp idle cell = %q, want -", cell)
			}
			continue
		}
		if !positive(cell) {
			t.Errorf("%s column %d = %q, want a positive number", impl, i+1, cell)
		}
	}
}

// checkJSON checks that path holds a report with a positive headline
// metric for every implementation and test, and returns it.
func checkJSON(t *testing.T, data []byte, impls []string) report {
	t.Helper()
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, data)
	}
	headline := map[string]string{testBulk: "mb_per_s", testStreams: "mb_per_s", testRPC: "calls_per_s", testIdle: "bytes_per_stream"}
	for _, impl := range impls {
		for _, test := range defaultTests {
			if impl == "tcp" && test == testIdle {
				continue
			}
			var found bool
			for _, r := range rep.Results {
				if r.Impl == impl && r.Test == test {
					found = true
					if r.Error != "" || !(r.Metrics[headline[test]] > 0) {
						t.Errorf("json %s %s: error %q, metrics %v", impl, test, r.Error, r.Metrics)
					}
				}
			}
			if !found {
				t.Errorf("json has no result for %s %s", impl, test)
			}
		}
	}
	return rep
}

func TestOneProcess(t *testing.T) {
	dir := t.TempDir()
	jsonPath, csvPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.csv")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), args("-json", jsonPath, "-csv", csvPath), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	rows := parseTable(t, stdout.String())
	impls := []string{"ours", "hashicorp", "libp2p", "smux", "tcp"}
	for _, impl := range impls {
		cells, ok := rows[impl]
		if !ok {
			t.Errorf("no table row for %s:\n%s", impl, stdout.String())
			continue
		}
		checkRow(t, impl, cells)
	}
	if len(rows) != len(impls) {
		t.Errorf("table has %d rows, want %d:\n%s", len(rows), len(impls), stdout.String())
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if rep := checkJSON(t, data, impls); rep.Mode != "local" {
		t.Errorf("json mode = %q, want local", rep.Mode)
	}

	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v", err)
	}
	// A header, then at least one row per implementation and timed test.
	if want := 1 + 3*len(impls); len(recs) < want {
		t.Errorf("csv has %d records, want at least %d", len(recs), want)
	}
}

// TestScaleTests runs the sessions-at-scale tests, which are not in the
// default run, with a few pairs each.
func TestScaleTests(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-tests", "sessions,busyidle,lowrate", "-sessions", "6", "-busy", "64KiB", "-lowrate", "3", "-d", "1s", "-json", "-q"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	impls := []string{"ours", "hashicorp", "libp2p", "smux", "tcp"}
	// busyidle's ratio is heap noise at a few pairs (it can be 0 for raw
	// TCP, whose Go-side cost is tiny): check that it ran for every pair.
	headline := map[string]string{testSessions: "pairs_per_s", testBusyIdle: "pairs", testLowRate: "calls_per_s"}
	for _, impl := range impls {
		for test, metric := range headline {
			rec := rep.find(impl, test)
			if rec == nil || rec.Error != "" || !(rec.Metrics[metric] > 0) {
				t.Errorf("%s %s: %+v", impl, test, rec)
			}
		}
	}
	// sess B/pair, g/pair, sessions/s, busy B/pair, busy/idle, lowrate p99, CPU/call.
	rows := parseTableN(t, stderr.String(), 7)
	if len(rows) != len(impls) {
		t.Errorf("table has %d rows, want %d:\n%s", len(rows), len(impls), stderr.String())
	}
	if cells := rows["tcp"]; len(cells) == 7 && cells[2] != "-" {
		t.Errorf("tcp sessions/s = %q, want - (raw TCP has no session)", cells[2])
	}
}

// TestJSONToStdout: with -json alone, stdout is only JSON and the table
// goes to stderr.
func TestJSONToStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), args("-impls", "ours", "-tests", "bulk,rpc", "-json", "-q"), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
	}
	if len(rep.Results) != 2 {
		t.Errorf("%d results, want 2: %s", len(rep.Results), stdout.String())
	}
	if !strings.Contains(stderr.String(), "1 stream MB/s") {
		t.Errorf("stderr lacks the table:\n%s", stderr.String())
	}
}

// addrWriter collects a server's stderr and hands over the address it
// listens on.
type addrWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
	sent bool
}

func (w *addrWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		for _, line := range strings.Split(w.buf.String(), "\n") {
			if _, addr, ok := strings.Cut(line, " on "); ok && strings.HasPrefix(line, "muxperf: serving ") {
				w.addr <- addr
				w.sent = true
				break
			}
		}
	}
	return len(p), nil
}

func (w *addrWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startServer runs muxperf -listen 127.0.0.1:0 in a goroutine and returns
// its address and a func that stops it and returns its error.
func startServer(t *testing.T, impl string) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &addrWriter{addr: make(chan string, 1)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-impl", impl}, &bytes.Buffer{}, w) }()
	stop = func() error {
		cancel()
		return <-done
	}
	select {
	case addr = <-w.addr:
		return addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("server ended: %v\n%s", err, w.String())
	case <-time.After(10 * time.Second):
		stop()
		t.Fatalf("server printed no address:\n%s", w.String())
	}
	return "", nil
}

func TestTwoProcesses(t *testing.T) {
	for _, impl := range []string{"ours", "tcp"} {
		t.Run("impl="+impl, func(t *testing.T) {
			addr, stop := startServer(t, impl)
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args("-connect", addr, "-json"), &stdout, &stderr)
			if serr := stop(); serr != nil {
				t.Errorf("server: %v", serr)
			}
			if err != nil {
				t.Fatalf("client: %v\nstderr:\n%s", err, stderr.String())
			}
			rep := checkJSON(t, stdout.Bytes(), []string{impl})
			if rep.Mode != "remote" || rep.Server != addr {
				t.Errorf("json mode %q, server %q; want remote, %s", rep.Mode, rep.Server, addr)
			}
			rows := parseTable(t, stderr.String())
			if cells, ok := rows[impl]; !ok || len(rows) != 1 {
				t.Errorf("table rows %v, want one for %s:\n%s", rows, impl, stderr.String())
			} else {
				checkRow(t, impl, cells)
			}
		})
	}
}

// TestWrongImpl: a client that expects another implementation than the
// server serves fails at once, and says why.
func TestWrongImpl(t *testing.T) {
	addr, stop := startServer(t, "ours")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args("-connect", addr, "-impl", "smux"), &stdout, &stderr)
	if serr := stop(); serr != nil {
		t.Errorf("server: %v", serr)
	}
	if err == nil || !strings.Contains(err.Error(), "serves ours, not smux") {
		t.Errorf("run = %v, want an error naming both implementations", err)
	}
}

func TestFlags(t *testing.T) {
	for _, bad := range [][]string{
		{"-tests", "nope"},
		{"-impls", "nope"},
		{"-listen", ":0", "-connect", "x:1"},
		{"-connect", "x:1", "-impls", "ours"},
		{"-listen", ":0", "-json"},
		{"-d", "0s"},
		{"-size", "0"},
		{"-sessions", "0"},
		{"-connect", "x:1", "-tests", "lowrate"},
		{"stray"},
	} {
		if err := run(t.Context(), bad, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q) succeeded; want an error", bad)
		}
	}
	c, err := parseFlags([]string{"-json", "out.json", "-d", "1s", "-size", "1MiB"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.json.path != "out.json" || c.d != time.Second || c.size != 1<<20 {
		t.Errorf("-json out.json -d 1s -size 1MiB: json %q, d %v, size %d", c.json.path, c.d, c.size)
	}
}
