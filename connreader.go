package yamux

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
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
// Owned by the receive loop; not safe for concurrent use, except
// interrupt, which any goroutine may call.
type connReader struct {
	rd    io.Reader
	big   *[]byte // from readBufs while busy; nil while idle
	buf   []byte  // what r..w index: big, or small
	r, w  int
	full  bool // the last read filled buf: more is probably waiting
	small [smallReadSize]byte

	// The read interrupt of direct delivery (direct.go). dl is the
	// connection's read deadline, immutable, nil when the connection has
	// none (nothing is then delivered directly). intr says that interrupt
	// set that deadline in the past; intrMu pairs the flag with the
	// deadline, and is held only across SetReadDeadline (which does not
	// wait for I/O), by any goroutine.
	dl     interface{ SetReadDeadline(time.Time) error }
	intrMu sync.Mutex
	intr   bool
}

const (
	readBufferSize = 16 << 10
	smallReadSize  = 256
)

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// newConnReader returns a reader of rd. When rd has read deadlines (a
// net.Conn, including *tls.Conn, whose read timeouts are not fatal, and
// the resumable connection, whose Read returns ErrTimeout and carries on),
// its deadline is cleared and kept for the read interrupt: the receive
// loop owns it from then on. A connection whose SetReadDeadline fails
// (an *os.File pipe) takes no part in direct delivery.
func newConnReader(rd io.Reader) *connReader {
	c := &connReader{rd: rd}
	if dl, ok := rd.(interface{ SetReadDeadline(time.Time) error }); ok && dl.SetReadDeadline(time.Time{}) == nil {
		c.dl = dl
	}
	return c
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
	n, err := c.readSome(c.buf)
	c.w = n
	c.full = n == len(c.buf)
	return err
}

// readSome reads into p until it gets a byte or an error: a reader may
// return 0 bytes and no error now and then (bufio.Reader gives up after
// 100 such reads in a row, and so do we). A read cut short by an
// interrupt that came too late for the fill it was meant for is retried.
func (c *connReader) readSome(p []byte) (int, error) {
	for range 100 {
		n, err := c.rd.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			if c.interrupted(err) {
				continue
			}
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// readDirect reads len(p) bytes into p, what the buffer holds first and
// the rest straight from the connection, like io.ReadFull, but an
// interrupt ends it early without an error: it returns the bytes it got.
func (c *connReader) readDirect(p []byte) (int, error) {
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if n == len(p) {
		return n, nil
	}
	c.release()
	c.full = false // as in Read: the next fill starts small
	for idle := 0; n < len(p); {
		m, err := c.rd.Read(p[n:])
		n += m
		if err != nil {
			if c.interrupted(err) {
				return n, nil
			}
			return n, err
		}
		if m > 0 {
			idle = 0
		} else if idle++; idle == 100 {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}

// interrupt makes the receive loop's read in progress, or its next one,
// return (see readDirect). Any goroutine may call it.
func (c *connReader) interrupt() {
	c.intrMu.Lock()
	c.intr = true
	c.dl.SetReadDeadline(aLongTimeAgo)
	c.intrMu.Unlock()
}

// interrupted reports whether err, from a read, is the doing of
// interrupt, and then clears the deadline again.
func (c *connReader) interrupted(err error) bool {
	if c.dl == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.intrMu.Lock()
	defer c.intrMu.Unlock()
	if !c.intr {
		return false
	}
	c.intr = false
	c.dl.SetReadDeadline(time.Time{})
	return true
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
			c.release()
			n, err := c.readSome(p)
			// A read into the caller's buffer says nothing about what
			// is left: the next fill starts small, and grows if that
			// comes back full.
			c.full = false
			return n, err
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
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
