package bench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// Volumes of the default run; see README.md for the whole run's budget.
var (
	// bulkVolume is what one BenchmarkBulk op transfers: BENCH_BULK_MIB
	// MiB, 256 by default.
	bulkVolume = int64(envInt("BENCH_BULK_MIB", 256)) << 20
	// lfnDuration is one BenchmarkLongFatLink op: BENCH_LFN_SECONDS, 5 by
	// default.
	lfnDuration = time.Duration(envInt("BENCH_LFN_SECONDS", 5)) * time.Second
	// idleStreams is BenchmarkIdleStreams' stream count: BENCH_IDLE_STREAMS,
	// 10,000 by default.
	idleStreams = envInt("BENCH_IDLE_STREAMS", 10000)
	// idleSessions is BenchmarkIdleSessions' pair count: BENCH_SESSIONS,
	// 4,000 by default (capped by the descriptor limit).
	idleSessions = envInt("BENCH_SESSIONS", 4000)
	// busySessions and busyVolume are BenchmarkBusyThenIdle's pairs and
	// the bytes each moves each way: BENCH_BUSY_SESSIONS, 1,000 by
	// default, and BENCH_BUSY_MIB, 2 by default.
	busySessions = envInt("BENCH_BUSY_SESSIONS", 1000)
	busyVolume   = int64(envInt("BENCH_BUSY_MIB", 2)) << 20
	// lowRateDuration is one BenchmarkManySessionsLowRate op:
	// BENCH_LOWRATE_SECONDS, 5 by default. BENCH_LOWRATE_10K=1 adds the
	// 10,000-session case to the 1,000 one.
	lowRateDuration = time.Duration(envInt("BENCH_LOWRATE_SECONDS", 5)) * time.Second
	lowRateSessions = lowRateCounts()
	// million enables BenchmarkMillionStreams: BENCH_MILLION=1.
	million = os.Getenv("BENCH_MILLION") == "1"
	// heapProfile, from BENCH_HEAP_PROFILE, is a file prefix: with it,
	// BenchmarkIdleSessions writes a heap profile of impl=ours while its
	// pairs are up to <prefix>-idle.pprof, and BenchmarkBusyThenIdle to
	// <prefix>-busy-before.pprof and <prefix>-busy-after.pprof (`go test
	// -memprofile` is written after every benchmark has torn its rigs
	// down, so it shows none of it).
	heapProfile = os.Getenv("BENCH_HEAP_PROFILE")
)

// closer is every rig.
type closer interface{ close() error }

func closeRig(b *testing.B, g closer) {
	if err := g.close(); err != nil {
		b.Errorf("close: %v", err)
	}
}

// perSecond reports n events over the benchmark's measured time.
func perSecond(b *testing.B, n int) float64 {
	return float64(n) / b.Elapsed().Seconds()
}

// BenchmarkBulk is scenario 1: one stream, bulkVolume per op in writes of
// 32 KiB or 1 MiB. MB/s is the stream's throughput.
func BenchmarkBulk(b *testing.B) {
	for _, im := range withShape() {
		for _, size := range []int{32 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("impl=%s/size=%s", im.name(), sizeName(int64(size))), func(b *testing.B) {
				g, err := newBulkRig(im, size, bulkVolume)
				if err != nil {
					b.Fatal(err)
				}
				defer closeRig(b, g)
				b.SetBytes(bulkVolume)
				b.ReportAllocs()
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStreams is scenario 2: 64 or 1024 concurrent streams of 1-4 MiB
// each (seeded), all in one op. MB/s is the aggregate; p90/p10 is the
// fairness metric (see streamsRig).
func BenchmarkStreams(b *testing.B) {
	for _, im := range impls() {
		for _, n := range []int{64, 1024} {
			b.Run(fmt.Sprintf("impl=%s/streams=%d", im.name(), n), func(b *testing.B) {
				g, err := newStreamsRig(im, n, 1<<20, 4<<20, 1)
				if err != nil {
					b.Fatal(err)
				}
				defer closeRig(b, g)
				b.SetBytes(g.total)
				b.ReportAllocs()
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(mean(g.fair), "p90/p10")
				b.ReportMetric(mean(g.doneSp), "done-p90/p10")
			})
		}
	}
}

// BenchmarkRPC is scenario 3: a new stream per request (128 B request,
// 1 KiB response, close), 1 or 64 requests at once. Raw TCP makes a new
// connection per request.
func BenchmarkRPC(b *testing.B) {
	benchRPC(b, func() (rpcProto, error) { return newRawRPC(), nil })
}

// BenchmarkNetRPCMsgpack is scenario 3 as net/rpc calls with
// hashicorp/go-msgpack's codec, one stream and one rpc.Client per call.
func BenchmarkNetRPCMsgpack(b *testing.B) {
	benchRPC(b, func() (rpcProto, error) { return newMsgpackRPC() })
}

func benchRPC(b *testing.B, proto func() (rpcProto, error)) {
	for _, im := range impls() {
		for _, conc := range []int{1, 64} {
			b.Run(fmt.Sprintf("impl=%s/conc=%d", im.name(), conc), func(b *testing.B) {
				p, err := proto()
				if err != nil {
					b.Fatal(err)
				}
				g, err := newRPCRig(im, p, conc)
				if err != nil {
					b.Fatal(err)
				}
				defer closeRig(b, g)
				b.ReportAllocs()
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
				if err := g.finish(); err != nil {
					b.Fatal(err)
				}
				lat := g.latencies()
				b.ReportMetric(perSecond(b, b.N), "req/s")
				b.ReportMetric(float64(percentile(lat, 50))/1e3, "p50-µs")
				b.ReportMetric(float64(percentile(lat, 99))/1e3, "p99-µs")
			})
		}
	}
}

// BenchmarkMessage is scenario 8: one message of 128 B or 64 KiB per new
// stream, answered with one byte, 1 or 64 at once. Ours: Session.Send
// (mode=send: answered once received) and SendAck (mode=ack: once the
// handler returned) to a Router, and the hand-written pattern on our
// streams (mode=stream); hashicorp and libp2p: the hand-written pattern
// (see scenario_message.go).
func BenchmarkMessage(b *testing.B) {
	for _, c := range msgCases() {
		for _, size := range messageSizes {
			for _, conc := range []int{1, 64} {
				b.Run(fmt.Sprintf("mode=%s/impl=%s/size=%s/conc=%d", c.mode, c.im.name(), sizeName(int64(size)), conc), func(b *testing.B) {
					g, err := newMsgRig(c.im, c.proto(), size, conc)
					if err != nil {
						b.Fatal(err)
					}
					defer closeRig(b, g)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						if err := g.op(); err != nil {
							b.Fatal(err)
						}
					}
					if err := g.finish(); err != nil {
						b.Fatal(err)
					}
					lat := g.latencies()
					b.ReportMetric(perSecond(b, b.N), "msg/s")
					b.ReportMetric(float64(percentile(lat, 50))/1e3, "p50-µs")
					b.ReportMetric(float64(percentile(lat, 99))/1e3, "p99-µs")
				})
			}
		}
	}
}

// BenchmarkPingPong is scenario 4: 64 B messages echoed on one stream; an
// op is one round trip.
func BenchmarkPingPong(b *testing.B) {
	for _, im := range withShape() {
		b.Run(fmt.Sprintf("impl=%s/size=64B", im.name()), func(b *testing.B) {
			g, err := newPingPongRig(im, 64)
			if err != nil {
				b.Fatal(err)
			}
			defer closeRig(b, g)
			b.ReportAllocs()
			for b.Loop() {
				if err := g.op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perSecond(b, b.N), "rt/s")
		})
	}
}

// BenchmarkIdleStreams is scenario 5: heap bytes and goroutines per idle
// open stream (both ends), for idleStreams streams, fresh (traffic=none) or
// after each carried 16 B each way (traffic=some). Raw TCP is left out (see
// idleRig). ns/op is not meaningful here.
func BenchmarkIdleStreams(b *testing.B) {
	for _, im := range impls() {
		if _, ok := im.(rawTCP); ok {
			continue
		}
		for _, traffic := range []bool{false, true} {
			name := "none"
			if traffic {
				name = "some"
			}
			b.Run(fmt.Sprintf("impl=%s/streams=%d/traffic=%s", im.name(), idleStreams, name), func(b *testing.B) {
				g := newIdleRig(im, idleStreams, traffic)
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(mean(g.bytes), "B/stream")
				b.ReportMetric(mean(g.gs), "goroutines/stream")
			})
		}
	}
}

// BenchmarkWriteRead is scenario 6: steady-state 32 KiB Write plus Read on
// one stream; allocs/op is the number to watch (it counts both ends and the
// sessions' goroutines).
func BenchmarkWriteRead(b *testing.B) {
	for _, im := range impls() {
		b.Run(fmt.Sprintf("impl=%s/size=32KiB", im.name()), func(b *testing.B) {
			g, err := newWriteReadRig(im, 32<<10)
			if err != nil {
				b.Fatal(err)
			}
			defer closeRig(b, g)
			b.SetBytes(32 << 10)
			b.ReportAllocs()
			for b.Loop() {
				if err := g.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLongFatLink is scenario 7: one stream over the emulated 50 ms
// links at 1, 3 and 10 Gbit/s (lfnLinks); MB/s is what arrived within
// lfnDuration of the stream's start, window ramp-up included. One op takes
// lfnDuration plus teardown, so the default run does one op per
// implementation and link.
func BenchmarkLongFatLink(b *testing.B) {
	for _, l := range lfnLinks {
		for _, im := range impls() {
			b.Run(fmt.Sprintf("impl=%s/rtt=%v/rate=%s", im.name(), 2*l.link.delay, l.name), func(b *testing.B) {
				g := newLFNRig(im, l.link, lfnDuration)
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(mean(g.mbps), "MB/s")
			})
		}
	}
}

// reportCap logs, and reports as the pairs metric, how many pairs a
// scenario ran when the descriptor limit made it fewer than asked.
func reportCap(b *testing.B, want, got int) {
	if got < want {
		b.Logf("%d pairs instead of %d: the descriptor limit (soft %d after raising it to the hard limit) allows no more", got, want, raiseFDLimit())
	}
	b.ReportMetric(float64(got), "pairs")
}

// BenchmarkIdleSessions is scenario 9: idleSessions session pairs over
// loopback TCP, each with 10 streams idle after one 16-byte exchange each
// way. B/pair is heap+stack per pair (both ends, after two GCs, against a
// baseline taken before), stack-B/pair the stack part of it; sessions/s counts dialling and starting both
// sessions only, pairs/s everything (also the 10 streams opened, accepted
// and exchanging). Raw TCP pairs are 10 connections each, so fewer fit the
// descriptor limit; its kernel memory is not counted. ns/op is not
// meaningful here.
func BenchmarkIdleSessions(b *testing.B) {
	for _, im := range impls() {
		b.Run(fmt.Sprintf("impl=%s/sessions=%d/streams=%d", im.name(), idleSessions, farmStreams), func(b *testing.B) {
			g := newIdleSessionsRig(im, idleSessions)
			if im.name() == "ours" && heapProfile != "" {
				g.profile = heapProfile + "-idle.pprof"
			}
			for b.Loop() {
				if err := g.op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(mean(g.bytes), "B/pair")
			b.ReportMetric(mean(g.stack), "stack-B/pair")
			b.ReportMetric(mean(g.gs), "goroutines/pair")
			if len(g.sessRate) > 0 {
				b.ReportMetric(mean(g.sessRate), "sessions/s")
			}
			b.ReportMetric(mean(g.pairRate), "pairs/s")
			reportCap(b, idleSessions, g.n)
		})
	}
}

// BenchmarkBusyThenIdle is scenario 10: busySessions pairs as in
// BenchmarkIdleSessions, measured, then each moves busyVolume each way on
// its first stream (8 pairs at a time), then measured idle again.
// idle-B/pair and B/pair are heap+stack per pair before and after
// (stack-B/pair the stack part of after);
// after/idle is their ratio (the goal: within 1.1); MB/s is the busy
// phase's, both directions together.
func BenchmarkBusyThenIdle(b *testing.B) {
	for _, im := range impls() {
		b.Run(fmt.Sprintf("impl=%s/sessions=%d/busy=%s", im.name(), busySessions, sizeName(busyVolume)), func(b *testing.B) {
			g := newBusyThenIdleRig(im, busySessions, busyVolume)
			if im.name() == "ours" && heapProfile != "" {
				g.profile = heapProfile + "-busy"
			}
			for b.Loop() {
				if err := g.op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(mean(g.idle), "idle-B/pair")
			b.ReportMetric(mean(g.after), "B/pair")
			b.ReportMetric(mean(g.afterStack), "stack-B/pair")
			b.ReportMetric(mean(g.ratio), "after/idle")
			b.ReportMetric(mean(g.mbps), "MB/s")
			reportCap(b, busySessions, g.n)
		})
	}
}

// millionSteps are BenchmarkMillionStreams' totals, over millionSessions.
var millionSteps = []int{10_000, 100_000, 1_000_000}

const millionSessions = 100

// BenchmarkMillionStreams is scenario 11, only with BENCH_MILLION=1: a
// million idle streams over 100 sessions, heap+stack per stream (both
// ends, sessions excluded) at 10k, 100k and 1M streams, the slope between
// the last two (bytes per extra stream) and the rate at which streams were
// opened and accepted. Multiplexers only; it needs a few GB of memory.
func BenchmarkMillionStreams(b *testing.B) {
	if !million {
		b.Skip("BENCH_MILLION=1 runs it (a few GB of memory, about a minute per implementation)")
	}
	for _, im := range impls() {
		m, ok := im.(muxImpl)
		if !ok {
			continue
		}
		total := millionSteps[len(millionSteps)-1]
		b.Run(fmt.Sprintf("impl=%s/sessions=%d/streams=%d", im.name(), millionSessions, total), func(b *testing.B) {
			g, err := newMillionRig(m, millionSessions, millionSteps)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := g.op(); err != nil {
					b.Fatal(err)
				}
			}
			for i, step := range millionSteps {
				var xs []float64
				for _, op := range g.perStream {
					xs = append(xs, op[i])
				}
				b.ReportMetric(mean(xs), "B/stream-"+countName(step))
			}
			b.ReportMetric(mean(g.slope), "slope-B/stream")
			b.ReportMetric(mean(g.rate), "streams/s")
		})
	}
}

// countName writes 10000 as 10k and 1000000 as 1M.
func countName(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	}
	return fmt.Sprint(n)
}

func lowRateCounts() []int {
	if os.Getenv("BENCH_LOWRATE_10K") == "1" {
		return []int{1000, 10000}
	}
	return []int{1000}
}

// BenchmarkManySessionsLowRate is scenario 12: 1,000 (and with
// BENCH_LOWRATE_10K=1 also 10,000) session pairs of 10 streams each, every
// stream doing a 1 KiB request and 1 KiB answer once a second, starts
// spread over the second, for lowRateDuration. p99-µs is the requests'
// latency (Write to the answer's last byte); CPU-µs/req the process's CPU
// time (getrusage: user + system, both ends and the benchmark's own
// goroutines) over the traffic phase per request; req/s what was done (the
// offered rate is 10 per pair per second). Raw TCP pairs are 10
// connections each, so fewer fit the descriptor limit.
func BenchmarkManySessionsLowRate(b *testing.B) {
	for _, n := range lowRateSessions {
		for _, im := range impls() {
			b.Run(fmt.Sprintf("impl=%s/sessions=%d/streams=%d", im.name(), n, farmStreams), func(b *testing.B) {
				g := newLowRateRig(im, n, lowRateDuration, time.Second)
				for b.Loop() {
					if err := g.op(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(mean(g.p50), "p50-µs")
				b.ReportMetric(mean(g.p99), "p99-µs")
				b.ReportMetric(mean(g.cpuPerReq), "CPU-µs/req")
				b.ReportMetric(mean(g.rate), "req/s")
				reportCap(b, n, g.n)
			})
		}
	}
}
