//go:build unix

package bench

import (
	"syscall"
	"time"
)

// raiseFDLimit raises the soft limit on open descriptors to the hard
// limit, where the process may, and returns the soft limit in force
// afterwards. (Go raises it at start-up already since 1.19; a benchmark
// that needs thousands of sockets does not rely on that.)
func raiseFDLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fallbackFDLimit
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = want.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			lim = want
		}
	}
	return int(min(lim.Cur, 1<<30))
}

// processCPU returns the user plus system CPU time this process has used,
// all threads together, or 0 if unknown.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
