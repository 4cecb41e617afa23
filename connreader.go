package yamux

import (
	"io"
	"sync"
)

// connReader is the receive loop's buffered reader of the connection. Unlike
// a bufio.Reader it holds its large buffer only while data is flowing: a
// read that filled the buffer it was given says more is waiting, so the
// next read gets the large buffer; any other read says the connection is
// drained, and the next read, the one that will block on an idle
// connection, uses a few hundred bytes inline instead. An idle session so
// holds no read buffer of its own, and a busy one reads up to
// readBufferSize at a time.
//
// Owned by the receive loop; not safe for concurrent use.
type connReader struct {
	rd    io.Reader
	vr    *vectorReader // nil unless rd is a TCP connection on Linux
	big   *[]byte       // from readBufs while busy; nil while idle
	buf   []byte        // what r..w index: big, or small
	r, w  int
	full  bool // the last read filled buf: more is probably waiting
	small [smallReadSize]byte
}

const (
	readBufferSize = 16 << 10
	smallReadSize  = 256
)

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

func newConnReader(rd io.Reader) *connReader {
	return &connReader{rd: rd, vr: newVectorReader(rd)}
}

// fill reads once into an empty buffer.
func (c *connReader) fill() error {
	c.r, c.w = 0, 0
	if c.full {
		if c.big == nil {
			c.big = readBufs.Get().(*[]byte)
		}
		c.buf = *c.big
	} else {
		c.release()
		c.buf = c.small[:]
	}
	n, err := readSome(c.rd, c.buf)
	c.w = n
	c.full = n == len(c.buf)
	return err
}

// readSome reads into p until it gets a byte or an error: a reader may
// return 0 bytes and no error now and then (bufio.Reader gives up after
// 100 such reads in a row, and so do we).
func readSome(rd io.Reader, p []byte) (int, error) {
	for range 100 {
		n, err := rd.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// release gives the large buffer back.
func (c *connReader) release() {
	if c.big != nil {
		readBufs.Put(c.big)
		c.big = nil
	}
}

// Read reads from the buffer, or, when it is empty and p is at least as
// large as the small buffer, directly into p (no copy for large payloads).
func (c *connReader) Read(p []byte) (int, error) {
	if c.r == c.w {
		if len(p) >= smallReadSize {
			return c.readDirect(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// readDirect reads into p while the buffer is empty. A read into the
// caller's buffer says nothing about what is left: the next fill starts
// small, and grows if that comes back full. Over TCP on Linux the same
// system call also reads what follows p into the small buffer, which is
// usually the next frame's header: a bulk frame then costs one read, not
// one for its payload and another for the header behind it.
func (c *connReader) readDirect(p []byte) (int, error) {
	c.release()
	c.full = false
	if c.vr == nil {
		return readSome(c.rd, p)
	}
	n, err := c.vr.readv(p, c.small[:])
	if n <= len(p) {
		return n, err
	}
	c.buf, c.r, c.w = c.small[:], 0, n-len(p)
	c.full = c.w == len(c.small)
	return len(p), nil
}

// peek returns the next n bytes if the buffer holds them, without consuming
// them, or nil. The slice is valid until the next call.
func (c *connReader) peek(n int) []byte {
	if c.w-c.r < n {
		return nil
	}
	return c.buf[c.r : c.r+n]
}

// Discard skips n bytes.
func (c *connReader) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return done, err
			}
		}
		m := min(n-done, c.w-c.r)
		c.r += m
		done += m
	}
	return done, nil
}
