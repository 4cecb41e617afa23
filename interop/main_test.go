package interop

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: ours, or one
// of the peer muxer's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
