package bench

import (
	"errors"
	"io"
	"net"
)

// bulkRig is scenario 1: one stream, the client writes volume bytes in
// writes of size bytes and the server reads them into a buffer of the same
// size. One op is one volume; the stream lives across ops.
type bulkRig struct {
	ep       *endpoints
	w, r     net.Conn
	volume   int64
	wbuf     []byte
	start    chan struct{}
	readDone chan error
	wd       *watchdog
}

func newBulkRig(im impl, size int, volume int64) (*bulkRig, error) {
	ep, err := im.connect(nil, options{streams: 1})
	if err != nil {
		return nil, err
	}
	w, r, err := streamPair(ep)
	if err != nil {
		ep.close()
		return nil, err
	}
	g := &bulkRig{
		ep: ep, w: w, r: r, volume: volume,
		wbuf:     fill(size),
		start:    make(chan struct{}),
		readDone: make(chan error),
	}
	g.wd = startWatchdog(stallLimit, g)
	rbuf := make([]byte, size)
	go func() {
		for range g.start {
			g.readDone <- readN(r, rbuf, volume)
		}
		close(g.readDone)
	}()
	return g, nil
}

func (g *bulkRig) op() error {
	g.start <- struct{}{}
	err := writeN(g.w, g.wbuf, g.volume)
	if err != nil {
		g.Close() // unblocks the reader
	}
	err = errors.Join(err, <-g.readDone)
	g.wd.tick()
	return g.wd.check(err)
}

// Close tears the connection down; safe to call more than once.
func (g *bulkRig) Close() error {
	err := g.ep.close()
	closeAll(g.w, g.r)
	return err
}

// close ends the rig and waits for its goroutines.
func (g *bulkRig) close() error {
	g.wd.stop()
	close(g.start)
	err := g.Close()
	for range g.readDone {
	}
	return err
}

var _ io.Closer = (*bulkRig)(nil)
