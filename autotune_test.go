package yamux

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// delayedPipe returns two connected ends whose bytes arrive delay after
// they were written, in order: a long link, in fake time when called in a
// synctest bubble. wait closes both ends and waits for the relays.
func delayedPipe(delay time.Duration) (a, b net.Conn, wait func()) {
	a, aRelay := net.Pipe()
	bRelay, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); relay(aRelay, bRelay, delay) }()
	go func() { defer wg.Done(); relay(bRelay, aRelay, delay) }()
	return a, b, func() { a.Close(); b.Close(); wg.Wait() }
}

// relay copies src to dst, each chunk delay after it was read.
func relay(src, dst net.Conn, delay time.Duration) {
	type chunk struct {
		due time.Time
		p   []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.p); err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	for range q { // let the reader goroutine finish
	}
}

// TestAutoTuneGrowsOnLongLink: over a 100 ms round trip, a reader that
// keeps up makes the receive window grow far past 256 KiB (which would cap
// the stream at 2.5 MB/s), within the first seconds.
func TestAutoTuneGrowsOnLongLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2, wait := delayedPipe(50 * time.Millisecond)
		defer wait()
		client, server := sessionsOver(t, c1, c2, nil, nil)
		a, b := streamPair(t, client, server)
		const total = 32 << 20
		go sendThenClose(a, total)
		start := time.Now()
		n, err := io.Copy(io.Discard, onlyReader{b})
		if err != nil || n != total {
			t.Fatalf("copied %d, %v; want %d", n, err, total)
		}
		elapsed := time.Since(start)
		if w := b.Stats().WindowSize; w < 4<<20 {
			t.Fatalf("receive window %d after %d bytes over a 100 ms RTT; want it grown to at least 4 MiB", w, total)
		}
		// With a fixed 256 KiB window this takes 128 round trips (12.8 s).
		if elapsed > 4*time.Second {
			t.Fatalf("32 MiB took %v of fake time; auto-tuning should make it a few round trips past the ramp", elapsed)
		}
	})
}

// TestAutoTuneHoldsForSlowReader: a reader slower than the data does not
// get a bigger window: it would only buffer more.
func TestAutoTuneHoldsForSlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2, wait := delayedPipe(50 * time.Millisecond)
		defer wait()
		client, server := sessionsOver(t, c1, c2, nil, nil)
		a, b := streamPair(t, client, server)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			buf := make([]byte, 1<<20)
			for ctx.Err() == nil {
				if _, err := a.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 16<<10)
		for i := 0; i < 100; i++ { // 16 KiB every 50 ms: 0.3 MB/s, far below the window's 2.5 MB/s
			if _, err := io.ReadFull(b, buf); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if w := b.Stats().WindowSize; w != initialStreamWindow {
			t.Fatalf("receive window grew to %d for a reader that never kept up; want %d", w, initialStreamWindow)
		}
		cancel()
		a.Reset()
	})
}

// TestAutoTuneShareOfBudget: a stream grows to no more than an equal share
// of half the MaxReceiveBuffer among the streams open at the time: a lone
// stream up to half the budget, one of five up to a tenth of it, so that
// the first stream to grow leaves room for the others (spec.md §4).
func TestAutoTuneShareOfBudget(t *testing.T) {
	const budget = 8 << 20
	synctest.Test(t, func(t *testing.T) {
		client, server, wait := budgetLinkPair(t, budget)
		defer wait()

		a, b := streamPair(t, client, server)
		if w := sendAll(t, a, b, 32<<20); w != budget/2 {
			t.Fatalf("a lone stream's window grew to %d; want half the budget, %d", w, budget/2)
		}
		a.Close()
		b.Close()
		for server.NumStreams() != 0 { // its window back in the budget
			time.Sleep(time.Millisecond)
		}

		for range 4 { // four idle streams, then a busy one: five open
			streamPair(t, client, server)
		}
		a, b = streamPair(t, client, server)
		share := uint32(budget / 2 / 5)
		if w := sendAll(t, a, b, 16<<20); w != share {
			t.Fatalf("one of five streams grew to %d; want its share, %d", w, share)
		}
	})
}

// sendAll moves total bytes from a to b and returns b's window after.
func sendAll(t *testing.T, a, b *Stream, total int) uint32 {
	t.Helper()
	go sendThenClose(a, total)
	if n, err := io.Copy(io.Discard, onlyReader{b}); err != nil || n != int64(total) {
		t.Fatalf("copied %d, %v; want %d", n, err, total)
	}
	return b.Stats().WindowSize
}

// TestAutoTuneGrowthLeavesHalf: streams that grow one after another, each
// while it is the busy one, and stay open, together grow by no more than
// half the MaxReceiveBuffer (windows do not shrink, and each one's share
// was taken when few streams were open), so the other half still holds
// the initial windows of the streams opened after them (spec.md §4).
// Before, three such streams took 7.7 of 8 MiB and later opens were
// refused.
func TestAutoTuneGrowthLeavesHalf(t *testing.T) {
	const budget = 8 << 20
	synctest.Test(t, func(t *testing.T) {
		client, server, wait := budgetLinkPair(t, budget)
		defer wait()
		var grown uint32
		for range 3 {
			a, b := streamPair(t, client, server)
			grown += sendAll(t, a, b, 16<<20) - initialStreamWindow // b stays open
		}
		if grown > budget/2 {
			t.Fatalf("three streams grew by %d in all; want at most half the budget, %d", grown, budget/2)
		}
		const later = budget/2/initialStreamWindow - 3 // what the other half holds beside the three
		for range later {
			streamPair(t, client, server)
		}
		if r := server.Stats().StreamsRefused; r != 0 {
			t.Fatalf("%d of %d streams opened after the growth were refused; want none", r, later)
		}
	})
}

// budgetLinkPair is a session pair over a 100 ms round trip whose server
// has a MaxReceiveBuffer of budget bytes; wait tears the link down.
func budgetLinkPair(t *testing.T, budget uint64) (client, server *Session, wait func()) {
	t.Helper()
	c1, c2, wait := delayedPipe(50 * time.Millisecond)
	scfg := DefaultConfig()
	scfg.MaxReceiveBuffer = budget
	client, server = sessionsOver(t, c1, c2, nil, scfg)
	return client, server, wait
}
