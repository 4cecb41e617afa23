package bench

import (
	"fmt"
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
	for _, im := range impls() {
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
	for _, im := range impls() {
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
