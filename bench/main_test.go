package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine (a session loop, a link pump, a
// scenario helper) outlives the tests and benchmarks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
