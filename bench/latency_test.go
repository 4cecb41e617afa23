package bench

import (
	"io"
	"testing"
	"time"
)

// TestLinkDelayAndRate checks the emulated link: a byte arrives no earlier
// than the one-way delay, and a burst no faster than the rate allows.
func TestLinkDelayAndRate(t *testing.T) {
	const (
		delay = 20 * time.Millisecond
		rate  = 10e6 // bytes per second
		burst = 300_000
	)
	c, s, err := tcpPair()
	if err != nil {
		t.Fatal(err)
	}
	link := linkConfig{delay: delay, rate: rate, buffer: 50 * time.Millisecond}
	lc := newLinkConn(c, link)
	defer lc.Close()
	defer s.Close()

	start := time.Now()
	if _, err := lc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, burst)
	if _, err := io.ReadFull(s, buf[:1]); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("one byte arrived after %v, want >= %v", d, delay)
	}

	out := make([]byte, burst)
	done := make(chan error, 1)
	go func() {
		_, err := lc.Write(out)
		done <- err
	}()
	start = time.Now()
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	want := delay + time.Duration(burst/rate*float64(time.Second))
	if d := time.Since(start); d < want*9/10 {
		t.Errorf("%d bytes arrived after %v, want >= %v", burst, d, want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
