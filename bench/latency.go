package bench

import (
	"net"
	"sync"
	"time"
)

// linkConfig describes an emulated network path in one direction: bytes
// written are serialised at rate, wait in a bottleneck queue of up to
// buffer, and arrive delay after they were serialised. Both directions of a
// connection get the same config, so the round trip is 2*delay.
//
// This replaces tc/netem, which needs privileges: the emulation sits in the
// process, between the muxer (or the raw-TCP user) and a loopback TCP
// connection whose own buffers are large and whose delay is negligible.
type linkConfig struct {
	delay  time.Duration // one-way propagation delay
	rate   float64       // link rate, bytes per second
	buffer time.Duration // bottleneck queue, in time at rate; Write blocks beyond it
}

// lfnLink is the slowest long fat link of BenchmarkLongFatLink: 50 ms round
// trip at 1 Gbit/s (a bandwidth-delay product of 6.25 MB), with 20 ms (2.5
// MB) of bottleneck buffer.
var lfnLink = linkConfig{delay: 25 * time.Millisecond, rate: 125e6, buffer: 20 * time.Millisecond}

// lfnLinks are the paths BenchmarkLongFatLink runs over: 50 ms round trip
// at 1, 3 and 10 Gbit/s (bandwidth-delay products of 6.25, 18.75 and 62.5
// MB; a 10 Gbit/s path across a continent), each with 20 ms of bottleneck
// buffer.
var lfnLinks = []struct {
	name string
	link linkConfig
}{
	{"1Gbit", lfnLink},
	{"3Gbit", linkConfig{delay: 25 * time.Millisecond, rate: 375e6, buffer: 20 * time.Millisecond}},
	{"10Gbit", linkConfig{delay: 25 * time.Millisecond, rate: 1.25e9, buffer: 20 * time.Millisecond}},
}

// linkPacket bounds one queued write, so that delivery is smooth.
const linkPacket = 64 << 10

// wrap returns a wrapFunc that puts each end of a connection behind the
// emulated link.
func (l linkConfig) wrap() wrapFunc {
	return func(c net.Conn) net.Conn { return newLinkConn(c, l) }
}

// linkConn delays and paces what is written to the underlying connection.
// Reads, addresses and read deadlines pass through. Write deadlines are
// accepted and ignored: Write blocks for at most the bottleneck queue (plus
// the time the peer takes to drain the delayed bytes, if it stops reading).
type linkConn struct {
	net.Conn
	cfg       linkConfig
	maxQueued int // bytes written but not delivered: a bound for a stuck peer

	mu     sync.Mutex
	cond   sync.Cond // on mu: q changed, closed, or err set
	q      []linkSeg
	queued int
	busy   time.Time // when the link finishes serialising what was written
	closed bool
	err    error

	closeCh chan struct{} // closed by Close: Writes stop, the pump drains
	abortCh chan struct{} // closed by Close when draining takes too long
	done    chan struct{} // closed when the pump returned
	once    sync.Once
}

type linkSeg struct {
	at   time.Time // delivery time
	data []byte
}

func newLinkConn(c net.Conn, cfg linkConfig) *linkConn {
	l := &linkConn{
		Conn:      c,
		cfg:       cfg,
		maxQueued: int(cfg.rate*(cfg.delay+cfg.buffer).Seconds())*2 + 4*linkPacket,
		closeCh:   make(chan struct{}),
		abortCh:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	l.cond.L = &l.mu
	go l.pump()
	return l
}

// Write queues p for delayed delivery and returns once the bottleneck queue
// has taken it all.
func (l *linkConn) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(len(p), linkPacket)
		if err := l.enqueue(p[:n]); err != nil {
			return total, err
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

func (l *linkConn) enqueue(p []byte) error {
	l.mu.Lock()
	for {
		switch {
		case l.closed:
			l.mu.Unlock()
			return net.ErrClosed
		case l.err != nil:
			err := l.err
			l.mu.Unlock()
			return err
		case l.queued >= l.maxQueued:
			l.cond.Wait() // the peer is not reading: wait for the pump
			continue
		}
		now := time.Now()
		start := now // when the link can start serialising p
		if l.busy.After(now) {
			start = l.busy
		}
		wait := start.Sub(now) - l.cfg.buffer
		if wait <= 0 {
			l.busy = start.Add(time.Duration(float64(len(p)) / l.cfg.rate * float64(time.Second)))
			l.q = append(l.q, linkSeg{at: l.busy.Add(l.cfg.delay), data: append([]byte(nil), p...)})
			l.queued += len(p)
			l.cond.Broadcast()
			l.mu.Unlock()
			return nil
		}
		// The bottleneck queue is full: wait until it has room.
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.closeCh:
			t.Stop()
		}
		l.mu.Lock()
	}
}

// pump delivers queued segments to the underlying connection at their
// delivery times, batching those that are due together. After Close it
// delivers what was queued, then closes the connection.
func (l *linkConn) pump() {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []linkSeg
	var bufs net.Buffers
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.closed && l.err == nil {
			l.cond.Wait()
		}
		if len(l.q) == 0 || l.err != nil {
			l.mu.Unlock()
			return
		}
		at := l.q[0].at
		l.mu.Unlock()

		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-l.abortCh:
				return
			}
		}

		l.mu.Lock()
		due := time.Now().Add(50 * time.Microsecond)
		i := 0
		for i < len(l.q) && !l.q[i].at.After(due) {
			i++
		}
		batch = append(batch[:0], l.q[:i]...)
		clear(l.q[:i])
		l.q = l.q[i:]
		l.mu.Unlock()

		n := 0
		bufs = bufs[:0]
		for _, s := range batch {
			bufs = append(bufs, s.data)
			n += len(s.data)
		}
		_, err := bufs.WriteTo(l.Conn)
		clear(batch)

		l.mu.Lock()
		l.queued -= n
		if err != nil && l.err == nil {
			l.err = err
		}
		l.cond.Broadcast()
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// linkDrainLimit bounds how long Close lets the pump deliver what is queued.
const linkDrainLimit = time.Second

// Close stops Writes, lets queued bytes arrive (for at most linkDrainLimit
// past their delivery time), then closes the underlying connection.
func (l *linkConn) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.cond.Broadcast()
		l.mu.Unlock()
		close(l.closeCh)
		l.Conn.SetWriteDeadline(time.Now().Add(l.cfg.delay + l.cfg.buffer + linkDrainLimit))
		t := time.NewTimer(l.cfg.delay + l.cfg.buffer + linkDrainLimit)
		select {
		case <-l.done:
			t.Stop()
		case <-t.C:
			close(l.abortCh)
		}
		err = l.Conn.Close()
		<-l.done
	})
	return err
}

// SetDeadline sets the read deadline only; see linkConn.
func (l *linkConn) SetDeadline(t time.Time) error { return l.Conn.SetReadDeadline(t) }

// SetWriteDeadline is accepted and ignored; see linkConn.
func (l *linkConn) SetWriteDeadline(time.Time) error { return nil }
