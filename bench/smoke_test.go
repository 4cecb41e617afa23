package bench

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestScenariosSmoke runs every scenario once for every implementation with
// tiny sizes, so that `go test -race` proves the benchmarks work. Each
// implementation runs in parallel with the others.
func TestScenariosSmoke(t *testing.T) {
	idlePause = 0 // only checks that the numbers are numbers
	old := stallLimit
	stallLimit = 20 * time.Second // a hang fails in seconds, not minutes
	t.Cleanup(func() { stallLimit = old })

	for _, im := range impls() {
		t.Run("impl="+im.name(), func(t *testing.T) {
			t.Parallel()
			smokeImpl(t, im)
		})
	}
}

func smokeImpl(t *testing.T, im impl) {
	_, isTCP := im.(rawTCP)
	check := func(name string, err error) bool {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return false
		}
		return true
	}

	t.Run("bulk", func(t *testing.T) {
		for _, c := range []struct {
			size   int
			volume int64
		}{{32 << 10, 1 << 20}, {1 << 20, 2 << 20}} {
			g, err := newBulkRig(im, c.size, c.volume)
			if !check(fmt.Sprintf("bulk size=%d", c.size), err) {
				continue
			}
			for range 2 {
				check("bulk op", g.op())
			}
			check("bulk close", g.close())
		}
	})

	t.Run("streams", func(t *testing.T) {
		for _, n := range []int{8, 64} {
			g, err := newStreamsRig(im, n, 16<<10, 64<<10, 1)
			if !check("streams", err) {
				continue
			}
			if check("streams op", g.op()) {
				if f := g.fair[0]; !(f >= 1) || math.IsInf(f, 0) {
					t.Errorf("streams=%d: p90/p10 = %v, want a finite ratio >= 1", n, f)
				}
			}
			check("streams close", g.close())
		}
	})

	t.Run("rpc", func(t *testing.T) {
		protos := map[string]func() (rpcProto, error){
			"raw":     func() (rpcProto, error) { return newRawRPC(), nil },
			"msgpack": func() (rpcProto, error) { return newMsgpackRPC() },
		}
		for name, proto := range protos {
			for _, conc := range []int{1, 8} {
				p, err := proto()
				if !check(name, err) {
					continue
				}
				g, err := newRPCRig(im, p, conc)
				if !check(name, err) {
					continue
				}
				const calls = 24
				for range calls {
					check(name+" op", g.op())
				}
				if check(name+" finish", g.finish()) {
					if lat := g.latencies(); len(lat) != calls || lat[0] <= 0 {
						t.Errorf("%s conc=%d: %d latencies (first %v), want %d positive", name, conc, len(lat), lat[0], calls)
					}
				}
				check(name+" close", g.close())
			}
		}
	})

	t.Run("message", func(t *testing.T) {
		for _, c := range msgCases() {
			if c.im.name() != im.name() {
				continue
			}
			for _, size := range messageSizes {
				for _, conc := range []int{1, 8} {
					name := fmt.Sprintf("message mode=%s size=%d conc=%d", c.mode, size, conc)
					g, err := newMsgRig(c.im, c.proto(), size, conc)
					if !check(name, err) {
						continue
					}
					const msgs = 24
					for range msgs {
						check(name+" op", g.op())
					}
					if check(name+" finish", g.finish()) {
						if lat := g.latencies(); len(lat) != msgs || lat[0] <= 0 {
							t.Errorf("%s: %d latencies (first %v), want %d positive", name, len(lat), lat[0], msgs)
						}
					}
					check(name+" close", g.close()) // also checks every message was handed over
				}
			}
		}
	})

	t.Run("pingpong", func(t *testing.T) {
		g, err := newPingPongRig(im, 64)
		if !check("pingpong", err) {
			return
		}
		for range 20 {
			check("pingpong op", g.op())
		}
		check("pingpong close", g.close())
	})

	t.Run("idle", func(t *testing.T) {
		if isTCP {
			return // not a scenario for raw TCP (see idleRig)
		}
		for _, traffic := range []bool{false, true} {
			g := newIdleRig(im, 100, traffic)
			if check("idle op", g.op()) && (math.IsNaN(g.bytes[0]) || math.IsNaN(g.gs[0])) {
				t.Errorf("idle traffic=%v: %v B/stream, %v goroutines/stream", traffic, g.bytes[0], g.gs[0])
			}
		}
	})

	t.Run("sessions", func(t *testing.T) {
		// The implementations run in parallel, so memory and goroutine
		// counts are only checked for being numbers.
		g := newIdleSessionsRig(im, 20)
		if check("idle sessions op", g.op()) && (math.IsNaN(g.bytes[0]) || math.IsNaN(g.gs[0]) || !(g.pairRate[0] > 0)) {
			t.Errorf("idle sessions: %v B/pair, %v goroutines/pair, %v pairs/s", g.bytes[0], g.gs[0], g.pairRate[0])
		}
		if !isTCP && (len(g.sessRate) != 1 || !(g.sessRate[0] > 0)) {
			t.Errorf("idle sessions: sessions/s %v, want one positive rate", g.sessRate)
		}
	})

	t.Run("busyidle", func(t *testing.T) {
		g := newBusyThenIdleRig(im, 8, 256<<10)
		if check("busy then idle op", g.op()) && (math.IsNaN(g.idle[0]) || math.IsNaN(g.after[0]) || !(g.mbps[0] > 0)) {
			t.Errorf("busy then idle: idle %v, after %v B/pair, ratio %v, %v MB/s", g.idle[0], g.after[0], g.ratio[0], g.mbps[0])
		}
	})

	t.Run("lowrate", func(t *testing.T) {
		g := newLowRateRig(im, 4, 300*time.Millisecond, 100*time.Millisecond)
		if check("low rate op", g.op()) {
			// 40 streams, 3 requests each.
			if !(g.p99[0] > 0 && g.rate[0] > 0) || g.cpuPerReq[0] < 0 {
				t.Errorf("low rate: p99 %v µs, %v req/s, %v µs CPU/req", g.p99[0], g.rate[0], g.cpuPerReq[0])
			}
		}
	})

	t.Run("million", func(t *testing.T) {
		m, ok := im.(muxImpl)
		if !ok {
			return // not a scenario for raw TCP (see millionRig)
		}
		g, err := newMillionRig(m, 2, []int{20, 200, 2000})
		if check("million", err) && check("million op", g.op()) {
			if ps := g.perStream[0]; len(ps) != 3 || math.IsNaN(ps[2]) || !(g.rate[0] > 0) || len(g.slope) != 1 {
				t.Errorf("million: per stream %v, slope %v, %v streams/s", ps, g.slope, g.rate)
			}
		}
	})

	t.Run("writeread", func(t *testing.T) {
		g, err := newWriteReadRig(im, 32<<10)
		if !check("writeread", err) {
			return
		}
		for range 10 {
			check("writeread op", g.op())
		}
		check("writeread close", g.close())
	})

	t.Run("lfn", func(t *testing.T) {
		link := linkConfig{delay: 2 * time.Millisecond, rate: 50e6, buffer: 2 * time.Millisecond}
		g := newLFNRig(im, link, 200*time.Millisecond)
		if check("lfn op", g.op()) && !(g.mbps[0] > 0) {
			t.Errorf("lfn: %v MB/s, want > 0", g.mbps[0])
		}
	})
}

// TestShapeSmoke runs the scenarios the diagnostic shapeTCP takes part in
// (BENCH_SHAPE=1): bulk in both sizes, and ping-pong.
func TestShapeSmoke(t *testing.T) {
	for _, size := range []int{32 << 10, 1 << 20} {
		g, err := newBulkRig(shapeTCP{}, size, 2<<20)
		if err != nil {
			t.Fatalf("bulk size=%d: %v", size, err)
		}
		for range 2 {
			if err := g.op(); err != nil {
				t.Errorf("bulk size=%d: %v", size, err)
			}
		}
		if err := g.close(); err != nil {
			t.Errorf("bulk close: %v", err)
		}
	}
	g, err := newPingPongRig(shapeTCP{}, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.close(); err != nil {
			t.Errorf("ping-pong close: %v", err)
		}
	}()
	for range 100 {
		if err := g.op(); err != nil {
			t.Fatalf("ping-pong: %v", err)
		}
	}
}
