package main

// This file is what muxperf writes: the progress line on stderr, the CSV
// rows, the table and the JSON report.

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux/bench"
)

// progress writes the live line to stderr and the rows of the CSV file.
type progress struct {
	w    io.Writer // nil: quiet
	tty  bool      // w is a terminal: one line, rewritten in place
	csvF *os.File
	csv  *csv.Writer
	mu   sync.Mutex // guards csv and w between a sampler and summary
}

func newProgress(c *config, stderr io.Writer) (*progress, error) {
	p := &progress{}
	if !c.quiet {
		p.w = stderr
		if f, ok := stderr.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				p.tty = true
			}
		}
	}
	if c.csvPath != "" {
		f, err := os.Create(c.csvPath)
		if err != nil {
			return nil, err
		}
		p.csvF, p.csv = f, csv.NewWriter(f)
		p.csv.Write([]string{"test", "impl", "t_s", "mb_per_s", "calls_per_s", "streams", "rtt_us"})
	}
	return p, nil
}

func (p *progress) close() error {
	if p.csv == nil {
		return nil
	}
	p.csv.Flush()
	return errors.Join(p.csv.Error(), p.csvF.Close())
}

// summary prints a test's result on one line.
func (p *progress) summary(rec *record) {
	if p.w == nil {
		return
	}
	what := fmt.Sprintf("(%v)", rec.res.Elapsed.Round(time.Millisecond))
	switch {
	case rec.err != nil:
		what = "error: " + rec.err.Error()
	case rec.Test == testBulk || rec.Test == testStreams:
		what = fmt.Sprintf("%s MB/s %s", fmtRate(rec.res.MBps()), what)
	case rec.Test == testRPC:
		what = fmt.Sprintf("%s calls/s, p50 %s, p99 %s %s", fmtRate(rec.res.CallsPerSec()), fmtDur(rec.res.P50), fmtDur(rec.res.P99), what)
	case rec.Test == testSessions:
		what = fmt.Sprintf("%.0f B and %.2f goroutines per pair, %s pairs/s, %s sessions/s, %d pairs %s", rec.res.BytesPerPair, rec.res.GoroutinesPerPair,
			fmtRate(rec.res.PairsPerSec), fmtOptRate(rec.res.SessionsPerSec), rec.res.Pairs, what)
	case rec.Test == testBusyIdle:
		what = fmt.Sprintf("%.0f B per pair idle, %.0f B after traffic (%.2f×), %d pairs %s", rec.res.BytesPerPair, rec.res.BusyBytesPerPair, rec.res.BusyRatio(), rec.res.Pairs, what)
	case rec.Test == testLowRate:
		what = fmt.Sprintf("%s calls/s, p50 %s, p99 %s, %s CPU per call, %d pairs %s", fmtRate(rec.res.CallsPerSec()), fmtDur(rec.res.P50), fmtDur(rec.res.P99), fmtDur(rec.res.CPUPerCall), rec.res.Pairs, what)
	default:
		what = fmt.Sprintf("%.0f B and %.2f goroutines per stream %s", rec.res.BytesPerStream, rec.res.GoroutinesPerStream, what)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "%-8s %-10s %s\n", rec.Test, rec.Impl, what)
}

// sampler reads one test's Meter once a second.
type sampler struct {
	p          *progress
	impl, test string
	m          *bench.Meter
	t0, last   time.Time
	lastBytes  int64
	lastCalls  int64
	rows       int
	stopCh     chan struct{}
	done       chan struct{}
}

func (p *progress) start(impl, test string, m *bench.Meter) *sampler {
	now := time.Now()
	s := &sampler{p: p, impl: impl, test: test, m: m, t0: now, last: now,
		stopCh: make(chan struct{}), done: make(chan struct{})}
	if test == testIdle || test == testSessions || test == testBusyIdle || (p.w == nil && p.csv == nil) {
		close(s.done) // nothing to sample
		return s
	}
	go s.loop()
	return s
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			// The last part of a second, or the whole of a short test.
			if d := time.Since(s.last); s.rows == 0 || d >= 100*time.Millisecond {
				s.sample(time.Now(), false)
			}
			return
		case now := <-t.C:
			s.sample(now, true)
		}
	}
}

// stop ends the sampler and waits for it.
func (s *sampler) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.stopCh)
	<-s.done
}

func (s *sampler) sample(now time.Time, live bool) {
	b, c := s.m.Bytes(), s.m.Calls()
	dt := now.Sub(s.last).Seconds()
	if dt <= 0 {
		return
	}
	mbps := float64(b-s.lastBytes) / 1e6 / dt
	cps := float64(c-s.lastCalls) / dt
	streams, rtt := s.m.Streams(), s.m.RTT()
	s.last, s.lastBytes, s.lastCalls = now, b, c
	s.rows++

	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.p.csv != nil {
		rttField := ""
		if rtt > 0 {
			rttField = strconv.FormatFloat(float64(rtt.Nanoseconds())/1e3, 'f', 1, 64)
		}
		s.p.csv.Write([]string{s.test, s.impl,
			strconv.FormatFloat(now.Sub(s.t0).Seconds(), 'f', 2, 64),
			strconv.FormatFloat(mbps, 'f', 1, 64),
			strconv.FormatFloat(cps, 'f', 0, 64),
			strconv.FormatInt(streams, 10), rttField})
	}
	if s.p.w == nil || !live {
		return
	}
	rate := fmt.Sprintf("%s MB/s", fmtRate(mbps))
	if s.test == testRPC || s.test == testLowRate {
		rate = fmt.Sprintf("%s calls/s", fmtRate(cps))
	}
	rttText := "-"
	if rtt > 0 {
		rttText = fmtDur(rtt)
	}
	line := fmt.Sprintf("%-8s %-10s %3.0fs  %14s  streams %d  rtt %s",
		s.test, s.impl, now.Sub(s.t0).Seconds(), rate, streams, rttText)
	if s.p.tty {
		fmt.Fprintf(s.p.w, "\r%s\033[K", line)
	} else {
		fmt.Fprintln(s.p.w, line)
	}
}

// fmtRate formats a rate with about four significant digits.
func fmtRate(x float64) string {
	if x >= 100 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

// fmtOptRate is fmtRate, or "-" for 0 (does not apply).
func fmtOptRate(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmtRate(x)
}

// fmtDur formats a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Nanosecond).String()
}

// column is one column of the table.
type column struct {
	test, head string
	cell       func(bench.Result) string
}

func columns(c *config) []column {
	var cols []column
	for _, t := range c.tests {
		switch t {
		case testBulk:
			cols = append(cols, column{t, "1 stream MB/s", func(r bench.Result) string { return fmtRate(r.MBps()) }})
		case testStreams:
			cols = append(cols, column{t, fmt.Sprintf("%d streams MB/s", c.streams), func(r bench.Result) string { return fmtRate(r.MBps()) }})
		case testRPC:
			cols = append(cols,
				column{t, "RPC calls/s", func(r bench.Result) string { return fmtRate(r.CallsPerSec()) }},
				column{t, "RPC p99", func(r bench.Result) string { return fmtDur(r.P99) }})
		case testIdle:
			cols = append(cols, column{t, "idle B/stream", func(r bench.Result) string { return strconv.FormatFloat(r.BytesPerStream, 'f', 0, 64) }})
		case testSessions:
			cols = append(cols,
				column{t, "sess B/pair", func(r bench.Result) string { return strconv.FormatFloat(r.BytesPerPair, 'f', 0, 64) }},
				column{t, "sess g/pair", func(r bench.Result) string { return strconv.FormatFloat(r.GoroutinesPerPair, 'f', 1, 64) }},
				column{t, "sessions/s", func(r bench.Result) string { return fmtOptRate(r.SessionsPerSec) }})
		case testBusyIdle:
			cols = append(cols,
				column{t, "busy B/pair", func(r bench.Result) string { return strconv.FormatFloat(r.BusyBytesPerPair, 'f', 0, 64) }},
				column{t, "busy/idle", func(r bench.Result) string { return strconv.FormatFloat(r.BusyRatio(), 'f', 2, 64) }})
		case testLowRate:
			cols = append(cols,
				column{t, "lowrate p99", func(r bench.Result) string { return fmtDur(r.P99) }},
				column{t, "CPU/call", func(r bench.Result) string { return fmtDur(r.CPUPerCall) }})
		}
	}
	return cols
}

// printTable prints a row per implementation and a column per metric:
// numbers, "-" where a test does not apply or did not run, "error" where
// it failed (the error is on stderr and in the JSON).
func printTable(w io.Writer, c *config, rep *report) {
	cols := columns(c)
	rows := [][]string{{"impl"}}
	for _, col := range cols {
		rows[0] = append(rows[0], col.head)
	}
	for _, name := range rep.Impls {
		row := []string{name}
		for _, col := range cols {
			cell := "-"
			if rec := rep.find(name, col.test); rec != nil {
				cell = "error"
				if rec.err == nil {
					cell = col.cell(rec.res)
				}
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(cell)))
			if i == 0 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	fmt.Fprintln(w, legend(c, rep))
}

// legend says what the columns measured, after a blank line.
func legend(c *config, rep *report) string {
	where := "loopback, one process"
	if rep.Mode == "remote" {
		where = "to the server at " + rep.Server
	}
	lines := []string{"", fmt.Sprintf("%v per test, %s, GOMAXPROCS %d.", c.d, where, rep.CPUs)}
	for _, t := range c.tests {
		switch t {
		case testBulk:
			lines = append(lines, fmt.Sprintf("bulk: one stream, %s writes.", fmtSize(c.size)))
		case testStreams:
			lines = append(lines, fmt.Sprintf("streams: %d at once, %s to %s each, aggregate.", c.streams, fmtSize(c.streamSize), fmtSize(4*c.streamSize)))
		case testRPC:
			lines = append(lines, fmt.Sprintf("rpc: a new stream per 128 B request and 1 KiB response, %d at once.", c.conc))
		case testIdle:
			ends := "both ends"
			if rep.Mode == "remote" {
				ends = "client and server"
			}
			lines = append(lines, fmt.Sprintf("idle: live heap per stream of %d open idle streams, %s.", c.idle, ends))
		case testSessions:
			lines = append(lines, fmt.Sprintf("sessions: heap+stack and goroutines per pair of %d idle session pairs (10 streams each, 16 B exchanged), both ends; sessions/s: dial + both sessions.", c.sessions))
		case testBusyIdle:
			lines = append(lines, fmt.Sprintf("busyidle: heap+stack per pair of %d pairs idle again after %s each way, and its ratio to before.", c.sessions, fmtSize(c.busy)))
		case testLowRate:
			lines = append(lines, fmt.Sprintf("lowrate: %d pairs × 10 streams, 1 KiB request and answer per stream per second; process CPU per call.", c.lowRate))
		}
	}
	return strings.Join(lines, "\n")
}

func writeJSON(stdout io.Writer, path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path != "" {
		return os.WriteFile(path, b, 0o644)
	}
	_, err = stdout.Write(b)
	return err
}
