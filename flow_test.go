package yamux

import (
	"errors"
	"math"
	"testing"
	"time"
)

// fakeBudget is a budget with left bytes, for windows up to max.
type fakeBudget struct{ left, max uint32 }

func (b *fakeBudget) limit() uint32 { return b.max }

func (b *fakeBudget) reserve(n uint32) bool {
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

func TestInflowTake(t *testing.T) {
	f := newInflow(100)
	if err := f.take(60); err != nil {
		t.Fatal(err)
	}
	if err := f.take(41); !errors.Is(err, ErrRecvWindowExceeded) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("take beyond the window = %v; want ErrRecvWindowExceeded", err)
	}
	if err := f.take(40); err != nil || f.avail != 0 {
		t.Fatalf("take(40) = %v, avail %d", err, f.avail)
	}
}

// TestInflowConsume: credit goes out per quarter window; auto-tuning
// doubles the window for a reader that keeps up, reading at least a quarter
// window per round trip, and only within the budget and the maximum.
func TestInflowConsume(t *testing.T) {
	const rtt = 10 * time.Millisecond
	t0 := time.Unix(1000, 0)
	cases := []struct {
		name     string
		size     uint32
		epoch    time.Time // previous credit
		consumed uint32
		buffered int
		now      time.Time
		max      uint32
		budget   uint32
		credit   uint32 // want
		size2    uint32 // want
	}{
		{"below a quarter: nothing yet", 1000, t0, 249, 0, t0.Add(rtt), 4000, 1 << 20, 0, 1000},
		{"a quarter: credit, first epoch cannot tune", 1000, time.Time{}, 250, 0, t0, 4000, 1 << 20, 250, 1000},
		{"a quarter per round trip: doubles", 1000, t0, 250, 0, t0.Add(rtt), 4000, 1 << 20, 1250, 2000},
		{"a whole window in one read per round trip: doubles", 1000, t0, 1000, 0, t0.Add(rtt), 4000, 1 << 20, 2000, 2000},
		{"half a window in two round trips: doubles", 1000, t0, 500, 0, t0.Add(2 * rtt), 4000, 1 << 20, 1500, 2000},
		{"slower than a quarter per round trip: stays", 1000, t0, 250, 0, t0.Add(rtt + 1), 4000, 1 << 20, 250, 1000},
		{"reader behind: stays", 1000, t0, 500, 126, t0.Add(rtt), 4000, 1 << 20, 500, 1000},
		{"at the maximum: stays", 4000, t0, 2000, 0, t0.Add(rtt), 4000, 1 << 20, 2000, 4000},
		{"capped at the maximum", 3000, t0, 1500, 0, t0.Add(rtt), 4000, 1 << 20, 2500, 4000},
		{"budget exhausted: stays", 1000, t0, 500, 0, t0.Add(rtt), 4000, 999, 500, 1000},
	}
	for _, c := range cases {
		f := newInflow(c.size)
		f.epoch = c.epoch
		f.avail = 0
		b := &fakeBudget{left: c.budget, max: c.max}
		credit := f.consume(c.consumed, c.buffered, c.now, rtt, b)
		if credit != c.credit || f.size != c.size2 {
			t.Errorf("%s: credit %d, size %d; want %d, %d", c.name, credit, f.size, c.credit, c.size2)
		}
		if f.avail != credit {
			t.Errorf("%s: avail %d after crediting %d", c.name, f.avail, credit)
		}
		if grew := f.size - c.size; c.budget-b.left != grew {
			t.Errorf("%s: reserved %d for growth of %d", c.name, c.budget-b.left, grew)
		}
	}
}

// TestInflowNoRTTNoTuning: without a measured round trip the window never
// grows.
func TestInflowNoRTTNoTuning(t *testing.T) {
	f := newInflow(1000)
	now := time.Unix(1000, 0)
	f.epoch = now
	if c := f.consume(500, 0, now.Add(time.Millisecond), 0, &fakeBudget{left: 1 << 20, max: 4000}); c != 500 || f.size != 1000 {
		t.Fatalf("credit %d, size %d; want 500, 1000", c, f.size)
	}
}

// TestInflowDiscard: dropped data is credited at once, together with what
// was consumed and not yet credited.
func TestInflowDiscard(t *testing.T) {
	f := newInflow(1000)
	f.take(700)
	f.consume(200, 500, time.Unix(1, 0), 0, noBudget{}) // below a quarter: no credit
	if c := f.discard(500); c != 700 || f.avail != 1000 || f.unacked != 0 {
		t.Fatalf("discard credit %d, avail %d, unacked %d; want 700, 1000, 0", c, f.avail, f.unacked)
	}
}

func TestOutflow(t *testing.T) {
	var f outflow
	if n := f.take(10, 100); n != 0 {
		t.Fatalf("take from an empty window = %d", n)
	}
	if err := f.add(300); err != nil {
		t.Fatal(err)
	}
	if n := f.take(1000, 256); n != 256 || f.avail != 44 {
		t.Fatalf("take capped by the frame limit = %d, avail %d", n, f.avail)
	}
	if n := f.take(1000, 256); n != 44 || f.avail != 0 {
		t.Fatalf("take the rest = %d, avail %d", n, f.avail)
	}
	f.giveBack(44)
	if f.avail != 44 {
		t.Fatalf("giveBack: avail %d", f.avail)
	}
	if err := f.add(math.MaxUint32 - 44); err != nil {
		t.Fatalf("add up to 2^32-1 = %v", err)
	}
	if err := f.add(1); !errors.Is(err, ErrProtocol) {
		t.Fatalf("add past 2^32-1 = %v; want ErrProtocol", err)
	}
	if f.avail != math.MaxUint32 {
		t.Fatalf("a refused add changed the window to %d", f.avail)
	}
}
