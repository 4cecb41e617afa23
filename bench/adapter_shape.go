package bench

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// shapeTCP is a diagnostic, not a multiplexer: raw TCP (one connection per
// stream) with the design card's shape and nothing else. Every Write hands
// its buffer to the connection's one writer goroutine and waits until that
// goroutine has written it, as our Write waits for the send loop; one
// reader goroutine per connection reads into buffers of its own and Read
// copies out of them, as our receive loop and Stream.Read do. No framing,
// no flow control, no locks beyond the channels. What it loses against raw
// TCP is what the shape costs by itself: the goroutine hand-offs and the
// extra copy on the receiving side. It runs only with BENCH_SHAPE=1 (see
// README.md, "The shape's own cost").
type shapeTCP struct{}

func (shapeTCP) name() string { return "tcp-shape" }

func (shapeTCP) connect(w wrapFunc, o options) (*endpoints, error) {
	return rawTCP{}.connect(func(c net.Conn) net.Conn {
		if w != nil {
			c = w(c)
		}
		return newShapeConn(c)
	}, o)
}

// withShape is impls() and, with BENCH_SHAPE=1, shapeTCP: for the
// scenarios whose shortfall against raw TCP the shape may explain (Bulk,
// PingPong).
func withShape() []impl {
	if os.Getenv("BENCH_SHAPE") != "1" {
		return impls()
	}
	return append(impls(), shapeTCP{})
}

// shapeReadSize is the reader goroutine's buffer, and shapeQueue how many
// filled buffers it may queue for Read (4 × 64 KiB, about the 256 KiB a
// yamux stream's initial window allows; with the one Read is copying out
// of and the one being filled, up to 6 exist).
const (
	shapeReadSize = 64 << 10
	shapeQueue    = 4
)

type shapeWrite struct {
	p    []byte
	done chan shapeResult
}

type shapeResult struct {
	n   int
	err error
}

// shapeConn is one end of a shapeTCP connection. Writes are serialised
// (one result channel), and so are Reads; read deadlines are not supported
// (the reader goroutine reads without one), which no rig uses.
type shapeConn struct {
	net.Conn
	writeMu sync.Mutex
	readMu  sync.Mutex
	writes  chan shapeWrite // to the writer goroutine
	done    chan shapeResult
	reads   chan []byte // filled buffers from the reader goroutine
	free    chan []byte // buffers Read has emptied, back to the reader
	cur     []byte      // what Read has not copied out of the buffer it holds
	held    []byte      // that buffer, whole
	rerr    error       // the reader goroutine's error, once reads is closed
	quit    chan struct{}
	once    sync.Once
}

func newShapeConn(c net.Conn) *shapeConn {
	sc := &shapeConn{
		Conn:   c,
		writes: make(chan shapeWrite),
		done:   make(chan shapeResult, 1),
		reads:  make(chan []byte, shapeQueue),
		free:   make(chan []byte, shapeQueue+1),
		quit:   make(chan struct{}),
	}
	for range shapeQueue + 1 {
		sc.free <- make([]byte, shapeReadSize)
	}
	go sc.writer()
	go sc.reader()
	return sc
}

func (sc *shapeConn) writer() {
	for {
		select {
		case w := <-sc.writes:
			n, err := sc.Conn.Write(w.p)
			w.done <- shapeResult{n, err}
		case <-sc.quit:
			return
		}
	}
}

func (sc *shapeConn) reader() {
	defer close(sc.reads)
	for {
		var buf []byte
		select {
		case buf = <-sc.free:
		case <-sc.quit:
			return
		}
		n, err := sc.Conn.Read(buf[:cap(buf)])
		if n > 0 {
			select {
			case sc.reads <- buf[:n]:
			case <-sc.quit:
				return
			}
		}
		if err != nil {
			sc.rerr = err
			return
		}
	}
}

func (sc *shapeConn) Write(p []byte) (int, error) {
	sc.writeMu.Lock()
	defer sc.writeMu.Unlock()
	select {
	case sc.writes <- shapeWrite{p, sc.done}:
	case <-sc.quit:
		return 0, net.ErrClosed
	}
	r := <-sc.done
	return r.n, r.err
}

func (sc *shapeConn) Read(p []byte) (int, error) {
	sc.readMu.Lock()
	defer sc.readMu.Unlock()
	if len(sc.cur) == 0 {
		if sc.held != nil {
			sc.free <- sc.held
			sc.held = nil
		}
		buf, ok := <-sc.reads
		if !ok {
			if sc.rerr == nil {
				return 0, net.ErrClosed // closed here, not by the peer
			}
			return 0, sc.rerr
		}
		sc.cur, sc.held = buf, buf
	}
	n := copy(p, sc.cur)
	sc.cur = sc.cur[n:]
	return n, nil
}

// SetReadDeadline and SetDeadline are not supported: see shapeConn.
func (sc *shapeConn) SetReadDeadline(time.Time) error { return errors.ErrUnsupported }

func (sc *shapeConn) SetDeadline(time.Time) error { return errors.ErrUnsupported }

func (sc *shapeConn) Close() error {
	sc.once.Do(func() { close(sc.quit) })
	return sc.Conn.Close()
}
