package libp2p

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines. go-libp2p's muxer test suite
// never closes the listeners of its GoServe helper, whose accept loops
// therefore outlive the tests: those, and only those, are ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/muxer/testsuite.GoServe.func1"),
	)
}
