// Command muxperf is iperf for stream multiplexers. With no flags it
// compares this yamux with hashicorp/yamux, libp2p/go-yamux, xtaci/smux and
// raw TCP on loopback, in one process, and prints a table: one stream's
// throughput, many streams' aggregate throughput, requests per second and
// p99 latency with a new stream per request, and the heap each idle stream
// costs.
//
//	cd bench && go run ./cmd/muxperf                       # about a minute
//	go run ./cmd/muxperf -impls ours,hashicorp -tests bulk,rpc -d 10s
//	go run ./cmd/muxperf -listen :5201 -impl ours          # on one machine
//	go run ./cmd/muxperf -connect host:5201                # on another
//
// The one-process tests are the rigs of BenchmarkBulk, BenchmarkStreams,
// BenchmarkRPC and BenchmarkIdleStreams, run for -d each instead of a
// number of ops. Three more, not in the default run and only in one
// process, are the sessions-at-scale rigs with small defaults:
// -tests sessions (BenchmarkIdleSessions, -sessions pairs), busyidle
// (BenchmarkBusyThenIdle, the same pairs and -busy bytes each way) and
// lowrate (BenchmarkManySessionsLowRate, -lowrate pairs for -d). Between two processes (-listen, -connect) the server
// serves one implementation and the client drives the same tests over a
// small protocol of its own (server.go). Progress goes to stderr once a
// second, the table to stdout; -json and -csv write machine-readable
// results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/d5da5f0f/yamux/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0) // as flag.ExitOnError does after -h
	case err != nil:
		fmt.Fprintln(os.Stderr, "muxperf:", err)
		os.Exit(1)
	}
}

// The tests, in the order they run and appear in the table.
const (
	testBulk    = "bulk"
	testStreams = "streams"
	testRPC     = "rpc"
	testIdle    = "idle"

	// Sessions at scale: one process only, not in the default run.
	testSessions = "sessions"
	testBusyIdle = "busyidle"
	testLowRate  = "lowrate"
)

var (
	allTests     = []string{testBulk, testStreams, testRPC, testIdle, testSessions, testBusyIdle, testLowRate}
	defaultTests = []string{testBulk, testStreams, testRPC, testIdle}
	// localTests run only with both ends in this process: they set up
	// thousands of connections, which the remote protocol does not do.
	localTests = []string{testSessions, testBusyIdle, testLowRate}
)

// config is the parsed command line.
type config struct {
	d          time.Duration
	impls      []bench.Impl // one process
	impl       string       // -impl: the server's, or the one the client expects
	tests      []string
	listen     string
	connect    string
	json       jsonFlag
	csvPath    string
	size       int64 // bulk write size
	streams    int
	streamSize int64
	conc       int
	idle       int
	sessions   int   // sessions, busyidle: session pairs
	busy       int64 // busyidle: bytes each way per pair
	lowRate    int   // lowrate: session pairs
	quiet      bool
}

// bulkVolume is what one bulk op (and one remote bulk record) carries: 512
// writes, between 1 MiB and 256 MiB.
func (c *config) bulkVolume() int64 { return min(max(512*c.size, 1<<20), 256<<20) }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{size: 32 << 10, streamSize: 1 << 20, busy: 2 << 20}
	fs := flag.NewFlagSet("muxperf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.d, "d", 3*time.Second, "length of each throughput and RPC test")
	implsFlag := fs.String("impls", "ours,hashicorp,libp2p,smux,tcp", "implementations to compare in one process")
	fs.StringVar(&c.impl, "impl", "", "one implementation: what -listen serves (default ours), what -connect expects (default: what the server serves); in one process, the same as -impls")
	testsFlag := fs.String("tests", strings.Join(defaultTests, ","), "tests to run: bulk (1 stream), streams (-streams at once), rpc (a stream per request, -conc at once), idle (heap per idle stream); in one process also sessions (heap per idle session pair), busyidle (the same after traffic), lowrate (many sessions at 1 request/s per stream)")
	fs.StringVar(&c.listen, "listen", "", "serve -impl on this address to muxperf -connect clients, until interrupted")
	fs.StringVar(&c.connect, "connect", "", "run the tests against the muxperf -listen server at this address")
	fs.Var(&c.json, "json", "write the results as JSON: -json to stdout (the table then goes to stderr), -json `file` to a file")
	fs.StringVar(&c.csvPath, "csv", "", "write throughput once a second per test to this CSV `file`")
	fs.Var((*sizeFlag)(&c.size), "size", "bulk: `bytes` per write (e.g. 32KiB, 1MiB)")
	fs.IntVar(&c.streams, "streams", 64, "streams: streams at once")
	fs.Var((*sizeFlag)(&c.streamSize), "stream-size", "streams: each stream carries a seeded random `size` to 4×size bytes")
	fs.IntVar(&c.conc, "conc", 64, "rpc: requests at once")
	fs.IntVar(&c.idle, "idle", 2000, "idle: streams held open")
	fs.IntVar(&c.sessions, "sessions", 200, "sessions, busyidle: session pairs, 10 streams each")
	fs.Var((*sizeFlag)(&c.busy), "busy", "busyidle: `bytes` each pair moves each way before it is weighed again")
	fs.IntVar(&c.lowRate, "lowrate", 100, "lowrate: session pairs, 10 streams each, for -d")
	fs.BoolVar(&c.quiet, "q", false, "print no progress on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `muxperf compares stream multiplexers on loopback in one process, or runs
the same tests between two processes or machines.

  muxperf [-d 3s] [-impls ours,hashicorp,libp2p,smux,tcp] [-tests bulk,streams,rpc,idle]
  muxperf -tests sessions,busyidle,lowrate [-sessions 200] [-busy 2MiB] [-lowrate 100]
  muxperf -listen :5201 [-impl ours]
  muxperf -connect host:5201 [-impl ours] [-tests ...]

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	// -json is a boolean flag so that it may stand alone; "-json file"
	// leaves the file as an argument, and flag parsing stops there.
	for fs.NArg() > 0 {
		if !c.json.set || c.json.path != "" || strings.HasPrefix(fs.Arg(0), "-") {
			return nil, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
		}
		c.json.path = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	switch {
	case c.d <= 0:
		return nil, errors.New("-d must be positive")
	case c.size <= 0 || c.streamSize <= 0 || c.streams <= 0 || c.conc <= 0 || c.idle <= 0:
		return nil, errors.New("-size, -stream-size, -streams, -conc and -idle must be positive")
	case c.sessions <= 0 || c.busy <= 0 || c.lowRate <= 0:
		return nil, errors.New("-sessions, -busy and -lowrate must be positive")
	case c.listen != "" && c.connect != "":
		return nil, errors.New("-listen and -connect exclude each other")
	case c.listen != "" && (c.json.set || c.csvPath != ""):
		return nil, errors.New("-json and -csv are for the side that runs the tests, not -listen")
	case (c.listen != "" || c.connect != "") && set["impls"]:
		return nil, errors.New("-listen and -connect run one implementation: use -impl")
	case c.impl != "" && set["impls"]:
		return nil, errors.New("use -impl or -impls, not both")
	}
	if c.impl != "" {
		if _, err := implNamed(c.impl); err != nil {
			return nil, err
		}
		*implsFlag = c.impl
	}
	for _, name := range splitList(*implsFlag) {
		im, err := implNamed(name)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(c.impls, func(o bench.Impl) bool { return o.Name() == name }) {
			c.impls = append(c.impls, im)
		}
	}
	for _, t := range splitList(*testsFlag) {
		if !slices.Contains(allTests, t) {
			return nil, fmt.Errorf("unknown test %q: want some of %s", t, strings.Join(allTests, ","))
		}
	}
	for _, t := range allTests { // table order, whatever the flag's order
		if slices.Contains(splitList(*testsFlag), t) {
			c.tests = append(c.tests, t)
		}
	}
	if len(c.impls) == 0 || len(c.tests) == 0 {
		return nil, errors.New("no implementation or no test selected")
	}
	if c.connect != "" {
		for _, t := range c.tests {
			if slices.Contains(localTests, t) {
				return nil, fmt.Errorf("test %s runs in one process only, not with -connect", t)
			}
		}
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func implNamed(name string) (bench.Impl, error) {
	var names []string
	for _, im := range bench.Impls() {
		if im.Name() == name {
			return im, nil
		}
		names = append(names, im.Name())
	}
	return bench.Impl{}, fmt.Errorf("unknown implementation %q: want one of %s", name, strings.Join(names, ","))
}

// jsonFlag is -json: alone (stdout) or with a file.
type jsonFlag struct {
	set  bool
	path string
}

func (f *jsonFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.path
}

func (f *jsonFlag) Set(s string) error {
	switch s {
	case "true":
		f.set = true
	case "false":
		f.set, f.path = false, ""
	default:
		f.set, f.path = true, s
	}
	return nil
}

func (f *jsonFlag) IsBoolFlag() bool { return true }

// sizeFlag is a byte count such as 4096, 32KiB, 1MiB or 1GiB.
type sizeFlag int64

func (f *sizeFlag) String() string {
	if f == nil {
		return ""
	}
	return fmtSize(int64(*f))
}

func (f *sizeFlag) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"k", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return errors.New("want a positive size such as 4096, 32KiB or 1MiB")
	}
	*f = sizeFlag(n * mult)
	return nil
}

func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// run is main without the process: tests call it with their own context,
// arguments and writers. It returns flag.ErrHelp after -h.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.listen != "" {
		name := c.impl
		if name == "" {
			name = "ours"
		}
		im, _ := implNamed(name)
		return serve(ctx, c.listen, im, c.quiet, stderr)
	}

	var rep *report
	if c.connect != "" {
		rep, err = runRemote(ctx, c, stderr)
	} else {
		rep, err = runLocal(ctx, c, stderr)
	}
	if rep == nil {
		return err
	}
	tableOut := stdout
	if c.json.set && c.json.path == "" {
		tableOut = stderr
	}
	printTable(tableOut, c, rep)
	if c.json.set {
		if jerr := writeJSON(stdout, c.json.path, rep); jerr != nil {
			err = errors.Join(err, jerr)
		}
	}
	if err == nil && rep.failed() {
		err = errors.New("some tests failed")
	}
	return err
}

// report is every result of one run, as -json writes it.
type report struct {
	Tool     string    `json:"tool"`
	Mode     string    `json:"mode"` // "local" (one process) or "remote"
	Server   string    `json:"server,omitempty"`
	Go       string    `json:"go"`
	OS       string    `json:"os"`
	Arch     string    `json:"arch"`
	CPUs     int       `json:"gomaxprocs"`
	Start    time.Time `json:"start"`
	Duration float64   `json:"test_duration_s"`
	Params   params    `json:"params"`
	Impls    []string  `json:"impls"`
	Results  []*record `json:"results"`
}

type params struct {
	WriteSize   int64 `json:"bulk_write_size"`
	BulkVolume  int64 `json:"bulk_op_bytes"`
	Streams     int   `json:"streams"`
	StreamSize  int64 `json:"stream_size_min"`
	Concurrency int   `json:"rpc_concurrency"`
	Idle        int   `json:"idle_streams"`
	Sessions    int   `json:"session_pairs"`
	Busy        int64 `json:"busy_bytes_each_way"`
	LowRate     int   `json:"lowrate_session_pairs"`
}

// record is one implementation's result in one test.
type record struct {
	Impl    string             `json:"impl"`
	Test    string             `json:"test"`
	Elapsed float64            `json:"elapsed_s"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Error   string             `json:"error,omitempty"`

	res bench.Result
	err error
}

func newReport(c *config, mode string) *report {
	var names []string
	for _, im := range c.impls {
		names = append(names, im.Name())
	}
	return &report{Impls: names,
		Tool: "muxperf", Mode: mode, Server: c.connect,
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.GOMAXPROCS(0),
		Start: time.Now().UTC().Truncate(time.Second), Duration: c.d.Seconds(),
		Params: params{
			WriteSize: c.size, BulkVolume: c.bulkVolume(), Streams: c.streams,
			StreamSize: c.streamSize, Concurrency: c.conc, Idle: c.idle,
			Sessions: c.sessions, Busy: c.busy, LowRate: c.lowRate,
		},
	}
}

func (r *report) add(impl, test string, res bench.Result, err error) *record {
	rec := &record{Impl: impl, Test: test, Elapsed: res.Elapsed.Seconds(), res: res, err: err}
	if err != nil {
		rec.Error = err.Error()
	} else {
		rec.Metrics = metrics(test, res)
	}
	r.Results = append(r.Results, rec)
	return rec
}

func (r *report) find(impl, test string) *record {
	for _, rec := range r.Results {
		if rec.Impl == impl && rec.Test == test {
			return rec
		}
	}
	return nil
}

func (r *report) failed() bool {
	return slices.ContainsFunc(r.Results, func(rec *record) bool { return rec.err != nil })
}

func metrics(test string, r bench.Result) map[string]float64 {
	m := map[string]float64{}
	switch test {
	case testBulk, testStreams:
		m["mb_per_s"] = r.MBps()
		m["bytes"] = float64(r.Bytes)
		m["streams"] = float64(r.Streams)
		if r.Fairness > 0 {
			m["fairness_p90_p10"] = r.Fairness
		}
	case testRPC:
		m["calls_per_s"] = r.CallsPerSec()
		m["calls"] = float64(r.Calls)
		m["concurrency"] = float64(r.Streams)
		m["p50_us"] = float64(r.P50.Nanoseconds()) / 1e3
		m["p99_us"] = float64(r.P99.Nanoseconds()) / 1e3
	case testIdle:
		m["bytes_per_stream"] = r.BytesPerStream
		m["goroutines_per_stream"] = r.GoroutinesPerStream
		m["streams"] = float64(r.Streams)
	case testSessions:
		m["bytes_per_pair"] = r.BytesPerPair
		m["goroutines_per_pair"] = r.GoroutinesPerPair
		m["pairs_per_s"] = r.PairsPerSec
		if r.SessionsPerSec > 0 {
			m["sessions_per_s"] = r.SessionsPerSec
		}
		m["pairs"] = float64(r.Pairs)
	case testBusyIdle:
		m["idle_bytes_per_pair"] = r.BytesPerPair
		m["bytes_per_pair"] = r.BusyBytesPerPair
		m["after_over_idle"] = r.BusyRatio()
		m["pairs"] = float64(r.Pairs)
	case testLowRate:
		m["p50_us"] = float64(r.P50.Nanoseconds()) / 1e3
		m["p99_us"] = float64(r.P99.Nanoseconds()) / 1e3
		m["cpu_us_per_call"] = float64(r.CPUPerCall.Nanoseconds()) / 1e3
		m["calls_per_s"] = r.CallsPerSec()
		m["calls"] = float64(r.Calls)
		m["pairs"] = float64(r.Pairs)
	}
	return m
}

// testFunc runs one test of one implementation, counting progress in m.
type testFunc func(ctx context.Context, im bench.Impl, test string, m *bench.Meter) (bench.Result, error)

// runTests runs every selected test of every implementation, test by test
// (so that the implementations of one test run close together in time),
// with progress on stderr and rows in the CSV file.
func runTests(ctx context.Context, c *config, rep *report, stderr io.Writer, fn testFunc) error {
	prog, err := newProgress(c, stderr)
	if err != nil {
		return err
	}
	if !c.quiet {
		// Each timed run lasts -d plus setup and teardown; an idle run
		// about half a second.
		var est time.Duration
		for _, t := range c.tests {
			for _, im := range c.impls {
				switch {
				case t == testSessions || t == testBusyIdle:
					est += time.Second
				case t == testLowRate:
					est += c.d + time.Second
				case t != testIdle:
					est += c.d + 100*time.Millisecond
				case im.Multiplexed():
					est += 500 * time.Millisecond
				}
			}
		}
		fmt.Fprintf(stderr, "muxperf: %s × %s, %v per test, about %v in all\n",
			strings.Join(c.tests, ","), implNames(c.impls), c.d, est.Round(100*time.Millisecond))
	}
	for _, test := range c.tests {
		for _, im := range c.impls {
			if test == testIdle && !im.Multiplexed() {
				continue // shown as "-": its cost is in the kernel (see idleRig)
			}
			if ctx.Err() != nil {
				return errors.Join(context.Cause(ctx), prog.close())
			}
			// A test that has not ended a minute after -d has hung: its
			// Run function then tears it down and fails.
			tctx, cancel := context.WithTimeoutCause(ctx, c.d+time.Minute,
				fmt.Errorf("%s %s: no result after %v", im.Name(), test, c.d+time.Minute))
			var m bench.Meter
			s := prog.start(im.Name(), test, &m)
			res, err := fn(tctx, im, test, &m)
			s.stop()
			cancel()
			rec := rep.add(im.Name(), test, res, err)
			prog.summary(rec)
		}
	}
	return prog.close()
}

func implNames(ims []bench.Impl) string {
	var names []string
	for _, im := range ims {
		names = append(names, im.Name())
	}
	return strings.Join(names, ",")
}

// runLocal runs the tests with both ends in this process.
func runLocal(ctx context.Context, c *config, stderr io.Writer) (*report, error) {
	rep := newReport(c, "local")
	err := runTests(ctx, c, rep, stderr, func(ctx context.Context, im bench.Impl, test string, m *bench.Meter) (bench.Result, error) {
		switch test {
		case testBulk:
			return bench.RunBulk(ctx, im, int(c.size), c.bulkVolume(), c.d, m)
		case testStreams:
			return bench.RunStreams(ctx, im, c.streams, c.streamSize, c.d, m)
		case testRPC:
			return bench.RunRPC(ctx, im, c.conc, c.d, m)
		case testSessions:
			return bench.RunIdleSessions(ctx, im, c.sessions)
		case testBusyIdle:
			return bench.RunBusyThenIdle(ctx, im, c.sessions, c.busy)
		case testLowRate:
			return bench.RunLowRate(ctx, im, c.lowRate, c.d, m)
		default:
			return bench.RunIdle(ctx, im, c.idle)
		}
	})
	return rep, err
}
