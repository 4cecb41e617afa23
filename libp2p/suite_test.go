package libp2p

import (
	"testing"

	testsuite "github.com/libp2p/go-libp2p/p2p/muxer/testsuite"
)

// TestSuite runs go-libp2p's own muxer test suite against this transport:
// the tests every go-libp2p multiplexer must pass.
func TestSuite(t *testing.T) {
	testsuite.SubtestAll(t, DefaultTransport)
}
