package bench

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkResumeCost is what the resumption layer costs on the happy
// path: scenario 1 (one stream, 32 KiB and 1 MiB writes) and scenario 4
// (64 B ping-pong) for impl=ours and impl=ours-resume, in the same run,
// over loopback TCP.
func BenchmarkResumeCost(b *testing.B) {
	for _, im := range []impl{muxImpl{oursMuxer{}}, resumeImpl{}} {
		for _, size := range []int{32 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("scenario=bulk/impl=%s/size=%s", im.name(), sizeName(int64(size))), func(b *testing.B) {
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
		b.Run(fmt.Sprintf("scenario=pingpong/impl=%s/size=64B", im.name()), func(b *testing.B) {
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

// TestResumeImplSmoke runs the resumption layer's benchmark rigs once,
// with tiny sizes, under the test command.
func TestResumeImplSmoke(t *testing.T) {
	old := stallLimit
	stallLimit = 20 * time.Second
	t.Cleanup(func() { stallLimit = old })
	g, err := newBulkRig(resumeImpl{}, 32<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := g.op(); err != nil {
			t.Error(err)
		}
	}
	if err := g.close(); err != nil {
		t.Error(err)
	}
	p, err := newPingPongRig(resumeImpl{}, 64)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := p.op(); err != nil {
			t.Error(err)
		}
	}
	if err := p.close(); err != nil {
		t.Error(err)
	}
}
