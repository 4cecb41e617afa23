//go:build linux && !race

package yamux

import "testing"

// TestConnReaderVectoredAllocs: the vectored read allocates nothing per
// call (the function handed to RawConn.Read is made once, not a closure
// per read). Not under -race, whose instrumentation allocates.
func TestConnReaderVectoredAllocs(t *testing.T) {
	a, b := tcpPair(t)
	c := newConnReader(b)
	msg := make([]byte, 4096)
	p := make([]byte, 4000)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(msg); {
			k, err := c.Read(p[:min(len(p), len(msg)-n)])
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 4 KiB read over TCP; want 0", allocs)
	}
}
