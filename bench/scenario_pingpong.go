package bench

import (
	"io"
	"net"
)

// pingPongRig is scenario 4: the client writes a message of size bytes on
// one stream and reads it back from the server's echo. One op is one round
// trip.
type pingPongRig struct {
	ep       *endpoints
	c, s     net.Conn
	msg, buf []byte
	echoDone chan error
	wd       *watchdog
}

func newPingPongRig(im impl, size int) (*pingPongRig, error) {
	ep, err := im.connect(nil, options{streams: 1})
	if err != nil {
		return nil, err
	}
	c, s, err := streamPair(ep)
	if err != nil {
		ep.close()
		return nil, err
	}
	g := &pingPongRig{ep: ep, c: c, s: s, msg: fill(size), buf: make([]byte, size), echoDone: make(chan error, 1)}
	g.wd = startWatchdog(stallLimit, ep)
	go func() {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				g.echoDone <- err
				return
			}
			if _, err := s.Write(buf); err != nil {
				g.echoDone <- err
				return
			}
		}
	}()
	return g, nil
}

func (g *pingPongRig) op() error {
	if _, err := g.c.Write(g.msg); err != nil {
		return g.wd.check(err)
	}
	_, err := io.ReadFull(g.c, g.buf)
	g.wd.tick()
	return g.wd.check(err)
}

// close ends the rig and waits for the echo loop, which fails once the
// session is closed.
func (g *pingPongRig) close() error {
	g.wd.stop()
	err := g.ep.close()
	<-g.echoDone
	closeAll(g.c, g.s)
	return err
}

// writeReadRig is scenario 6: steady-state Write of size bytes on one
// stream and Read of them at the other end, in the same goroutine. One op is
// one Write plus the Reads that return its bytes; allocs/op counts both
// ends and every session goroutine.
type writeReadRig struct {
	ep         *endpoints
	c, s       net.Conn
	wbuf, rbuf []byte
	wd         *watchdog
}

func newWriteReadRig(im impl, size int) (*writeReadRig, error) {
	ep, err := im.connect(nil, options{streams: 1})
	if err != nil {
		return nil, err
	}
	c, s, err := streamPair(ep)
	if err != nil {
		ep.close()
		return nil, err
	}
	g := &writeReadRig{ep: ep, c: c, s: s, wbuf: fill(size), rbuf: make([]byte, size)}
	g.wd = startWatchdog(stallLimit, ep)
	return g, nil
}

func (g *writeReadRig) op() error {
	if _, err := g.c.Write(g.wbuf); err != nil {
		return g.wd.check(err)
	}
	err := readN(g.s, g.rbuf, int64(len(g.wbuf)))
	g.wd.tick()
	return g.wd.check(err)
}

func (g *writeReadRig) close() error {
	g.wd.stop()
	err := g.ep.close()
	closeAll(g.c, g.s)
	return err
}
