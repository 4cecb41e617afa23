//go:build !unix

package bench

import "time"

// raiseFDLimit cannot query the limit here and assumes fallbackFDLimit.
func raiseFDLimit() int { return fallbackFDLimit }

// processCPU is unknown here: 0.
func processCPU() time.Duration { return 0 }
