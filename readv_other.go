//go:build !linux

package yamux

import "io"

// vectorReader is Linux only (readv_linux.go); elsewhere payloads are read
// with plain reads.
type vectorReader struct{}

func newVectorReader(io.Reader) *vectorReader { return nil }

func (*vectorReader) readv(a, b []byte) (int, error) { panic("unreachable") }
