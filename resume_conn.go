package yamux

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// This file holds resumableConn, the net.Conn a session runs over when it
// uses the resumption layer (spec.md §13). It carries the session's byte
// stream over a sequence of network connections ("generations"): records
// on the wire (data, acknowledgements, probes, close), a replay buffer of
// what the peer has not acknowledged, and the switch from one generation
// to the next.
//
// Goroutines: the session's receive loop calls Read, which is the only
// reader of the current generation; the session's send loop calls Write,
// which only copies into the replay buffer; one goroutine per connection,
// the pump, is the only writer of the current generation (data, and the
// acknowledgements the reader asks for, so that Read never waits on the
// network's send path); on a client, one more goroutine exists while a
// lost connection is being re-established. Timers (delayed
// acknowledgement, liveness, a server's detach timeout) are timers.
//
// Lock order: resumableConn.mu, then ResumeListener.mu (a leaf). readMu
// and writeMu serialise Reads and Writes and are taken before mu; no lock
// is held across network I/O.

// Record types (spec.md §13.3).
const (
	recData  = 1 // length (4 bytes), then that many bytes of the stream
	recAck   = 2 // the bytes received so far (8 bytes)
	recPing  = 3 // please answer with a pong
	recPong  = 4
	recClose = 5 // no more records from me; do not resume towards me
)

type resumePhase int

const (
	phaseConnected    resumePhase = iota
	phaseReconnecting             // no generation: Reads and Writes wait
	phaseDone                     // failed or closed for good: err is set
)

// errGenDead is what a read of a generation that was replaced returns
// internally: the reader moves on to the next one.
var errGenDead = errors.New("yamux: resumable connection: generation replaced")

// errCloseRecord is what reading the peer's close record returns
// internally; Read then returns io.EOF.
var errCloseRecord = errors.New("yamux: resumable connection: close record")

// errResumeClosed is the cause of a connection closed locally, or after a
// close record.
var errResumeClosed = fmt.Errorf("yamux: resumable connection closed: %w", net.ErrClosed)

// resumeGen is one network connection in the life of a resumableConn.
type resumeGen struct {
	conn     net.Conn
	rd       *connReader
	vectored bool
	dead     bool // guarded by resumableConn.mu

	// owned by the reader (readMu)
	recLeft uint32 // data bytes left in the current record
	hdr     [9]byte
	hdrN    int
	hdrNeed int
}

// connDeadline is a deadline and the connection's time offline when it
// was set: time spent reconnecting after that does not count towards it
// (spec.md §13.6).
type connDeadline struct {
	t   time.Time
	off time.Duration
}

// resumableConn: see the file comment.
//
// Ownership: immutable after newResumableConn: client, rc, dial, srv, id,
// secret, tls, peerKey, hasKey, ackEvery, logger, the channels, ctx,
// cancel. Everything below mu is guarded by it.
type resumableConn struct {
	client   bool
	rc       ResumeConfig
	dial     func(context.Context) (net.Conn, error) // client only
	srv      *ResumeListener                         // server only
	id       [sessionIDLen]byte
	secret   [secretLen]byte
	tls      bool
	peerKey  [32]byte
	hasKey   bool
	ackEvery uint64
	logger   *slog.Logger
	ctx      context.Context // canceled when the connection is done: ends reconnection attempts
	cancel   context.CancelFunc

	readMu     sync.Mutex  // serialises Reads
	readTimer  *time.Timer // guarded by readMu
	writeMu    sync.Mutex  // serialises Writes
	writeTimer *time.Timer // guarded by writeMu

	pumpWake    chan struct{} // 1-buffered
	readWake    chan struct{} // 1-buffered
	writeWake   chan struct{} // 1-buffered
	pumpDone    chan struct{}
	closeSentCh chan struct{}  // closed when the close record was written
	wg          sync.WaitGroup // the reconnecting goroutine

	mu       sync.Mutex
	phase    resumePhase
	gen      *resumeGen // nil unless connected
	err      error      // why the connection is done
	stateCh  chan struct{}
	local    net.Addr
	remote   net.Addr
	tlsState tls.ConnectionState

	// sending
	buf         replayBuffer // [acked, buf.end) not acknowledged
	acked       uint64       // the peer has acknowledged [0, acked)
	sent        uint64       // the pump has written [0, sent) counting from the generation's start
	sentMax     uint64       // the most ever handed to a network write, over all generations
	writing     bool         // the pump is writing [writeFrom, ...)
	writeFrom   uint64
	closeQueued bool // CloseWrite or Close: a close record follows the data
	closeSent   bool
	localClosed bool

	// receiving
	recvd      uint64 // bytes Read returned
	ackSent    uint64 // the count last told the peer
	ackArmed   bool
	ackFired   bool
	ackTimer   *time.Timer
	peerClosed bool
	pongDue    bool
	pingDue    bool
	pingOut    bool // a ping awaits its pong

	// liveness (spec.md §13.4)
	liveArmed  bool
	liveTimer  *time.Timer
	rxAll      uint64 // records of any kind received
	rxAct      uint64 // data received
	txAct      uint64 // records sent, pings and pongs aside
	lastRxAll  uint64
	lastRxAct  uint64
	lastTxAct  uint64
	silent     time.Duration // nothing received for this long
	idle       time.Duration // no traffic either way for this long
	offline    time.Duration // time spent reconnecting, finished periods
	offSince   time.Time
	rdl, wdl   connDeadline
	reconnects uint64
	attempts   uint64
	replayed   uint64

	// server
	detachTimer   *time.Timer
	detachArmed   bool
	detachEpoch   uint64
	resuming      bool  // a handshake is resuming this connection
	expirePending error // the detach timer fired while resuming
}

var _ net.Conn = (*resumableConn)(nil)

// resumableTLSConn is a resumableConn born over TLS: it also reports the
// TLS state of its current connection, so that Session.ConnectionState
// and Session.PeerID work.
type resumableTLSConn struct{ *resumableConn }

// ConnectionState returns the TLS state of the current (or last)
// connection.
func (c *resumableTLSConn) ConnectionState() tls.ConnectionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tlsState
}

// newResumableConn starts a connection over raw, on which the handshake
// hs was done, and its pump.
func newResumableConn(client bool, raw net.Conn, hs handshakeResult, rc *ResumeConfig, srv *ResumeListener, dial func(context.Context) (net.Conn, error)) *resumableConn {
	c := &resumableConn{
		client:      client,
		rc:          *rc,
		srv:         srv,
		dial:        dial,
		id:          hs.id,
		secret:      hs.secret,
		tls:         hs.tls,
		peerKey:     hs.peerKey,
		hasKey:      hs.hasKey,
		ackEvery:    resumeAckBytes,
		logger:      rc.logger(),
		pumpWake:    make(chan struct{}, 1),
		readWake:    make(chan struct{}, 1),
		writeWake:   make(chan struct{}, 1),
		pumpDone:    make(chan struct{}),
		closeSentCh: make(chan struct{}),
		stateCh:     make(chan struct{}),
	}
	// Acknowledge often enough that the peer's replay buffer never fills
	// for want of one (a peer of ours has at least 64 KiB; a smaller
	// claim does not make us acknowledge every few bytes).
	if q := uint64(hs.peerReplay) / 4; q < c.ackEvery {
		c.ackEvery = max(q, minReplayBuffer/4)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	c.gen = c.newGenLocked(raw)
	c.mu.Unlock()
	go c.pump()
	return c
}

// netConn returns what the session runs over.
func (c *resumableConn) netConn() net.Conn {
	if c.tls {
		return &resumableTLSConn{c}
	}
	return c
}

func (c *resumableConn) newGenLocked(raw net.Conn) *resumeGen {
	g := &resumeGen{conn: raw, rd: newConnReader(raw)}
	switch raw.(type) {
	case *net.TCPConn, *net.UnixConn:
		g.vectored = true
	}
	c.local, c.remote = raw.LocalAddr(), raw.RemoteAddr()
	if t, ok := raw.(interface{ ConnectionState() tls.ConnectionState }); ok {
		c.tlsState = t.ConnectionState()
	}
	if eff := c.effLocked(c.rdl, time.Now()); !eff.IsZero() {
		raw.SetReadDeadline(eff)
	}
	return g
}

// signal wakes a 1-buffered channel's waiter without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stateChangedLocked tells every waiter that the phase changed.
func (c *resumableConn) stateChangedLocked() {
	close(c.stateCh)
	c.stateCh = make(chan struct{})
	signal(c.readWake)
	signal(c.writeWake)
	signal(c.pumpWake)
}

// after is what a locked section leaves to do once mu is released.
type after struct {
	conns      []net.Conn
	reconnect  bool
	evict      *resumableConn
	evictEpoch uint64
}

func (c *resumableConn) run(a *after) {
	for _, cn := range a.conns {
		closeRaw(cn)
	}
	if a.reconnect {
		go c.reconnectLoop()
	}
	if a.evict != nil {
		a.evict.expire(a.evictEpoch, ErrResumeLimit)
	}
}

// closeRaw closes a network connection at once: under TLS, the raw
// connection first, so that Close does not try to write an alert to a
// connection that may be stuck.
func closeRaw(conn net.Conn) {
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		nc.NetConn().Close()
	}
	conn.Close()
}

// lostLocked handles the loss of generation g: a reconnection starts, or
// the connection is done when it was closing.
func (c *resumableConn) lostLocked(g *resumeGen, cause error, a *after) {
	if g == nil || g.dead {
		return
	}
	g.dead = true
	a.conns = append(a.conns, g.conn)
	if c.gen != g || c.phase != phaseConnected {
		return
	}
	c.gen = nil
	if c.peerClosed || c.closeSent || c.localClosed {
		c.finishLocked(errResumeClosed, a)
		return
	}
	c.phase = phaseReconnecting
	c.offSince = time.Now()
	c.stopTimersLocked()
	c.stateChangedLocked()
	c.logger.Info("yamux: connection lost; resuming", "err", cause, "client", c.client)
	if c.client {
		c.wg.Add(1) // under mu while not done: Close waits after done is set
		a.reconnect = true
	} else {
		c.detachLocked(a)
	}
}

// finishLocked ends the connection for good with err.
func (c *resumableConn) finishLocked(err error, a *after) {
	if c.phase == phaseDone {
		return
	}
	if c.phase == phaseReconnecting {
		c.offline += time.Since(c.offSince)
	}
	c.phase = phaseDone
	c.err = err
	if g := c.gen; g != nil {
		g.dead = true
		a.conns = append(a.conns, g.conn)
		c.gen = nil
	}
	c.stopTimersLocked()
	if c.detachTimer != nil {
		c.detachTimer.Stop()
	}
	c.detachArmed = false
	c.cancel()
	c.stateChangedLocked()
	if c.srv != nil {
		c.srv.forgetLocked(c, err)
	}
	// The pump frees the replay buffer: it may be writing from it.
}

// fail ends the connection for good with err.
func (c *resumableConn) fail(err error) {
	var a after
	c.mu.Lock()
	c.finishLocked(err, &a)
	c.mu.Unlock()
	c.run(&a)
}

func (c *resumableConn) stopTimersLocked() {
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	if c.liveTimer != nil {
		c.liveTimer.Stop()
	}
	c.ackArmed, c.ackFired, c.liveArmed = false, false, false
	c.pingDue, c.pongDue, c.pingOut = false, false, false
}

// offlineLocked returns the time spent reconnecting so far.
func (c *resumableConn) offlineLocked(now time.Time) time.Duration {
	if c.phase == phaseReconnecting {
		return c.offline + now.Sub(c.offSince)
	}
	return c.offline
}

// effLocked returns deadline d moved by the time spent reconnecting since
// it was set.
func (c *resumableConn) effLocked(d connDeadline, now time.Time) time.Time {
	if d.t.IsZero() {
		return d.t
	}
	return d.t.Add(c.offlineLocked(now) - d.off)
}

// waitWake blocks until ch fires or the effective deadline eff passes. While
// reconnecting the deadline cannot pass (the clock it runs on stops), so
// only ch ends the wait. *tp is the caller's timer, reused across waits
// (Reads and Writes are each serialised, so each side has one).
func waitWake(ch chan struct{}, eff time.Time, paused bool, tp **time.Timer) {
	if eff.IsZero() || paused {
		<-ch
		return
	}
	d := time.Until(eff)
	if d <= 0 {
		return
	}
	if *tp == nil {
		*tp = time.NewTimer(d)
	} else {
		(*tp).Reset(d)
	}
	select {
	case <-ch:
	case <-(*tp).C:
	}
	(*tp).Stop()
}

// Read reads the session's incoming byte stream. While the connection is
// being re-established it waits; it returns io.EOF after the peer's close
// record, [ErrTimeout] at the read deadline, and the connection's error
// once it is done.
func (c *resumableConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		c.mu.Lock()
		var err error
		now := time.Now()
		eff := c.effLocked(c.rdl, now)
		switch {
		case c.peerClosed:
			err = io.EOF
		case c.localClosed:
			err = errResumeClosed
		case c.phase == phaseDone:
			err = c.err
		case !eff.IsZero() && !now.Before(eff):
			err = ErrTimeout
		}
		g, paused := c.gen, c.phase == phaseReconnecting
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if g == nil {
			waitWake(c.readWake, eff, paused, &c.readTimer)
			continue
		}
		n, err := c.readGen(g, p)
		if n > 0 {
			return n, nil
		}
		switch {
		case err == errCloseRecord:
			// the loop returns io.EOF
		case errors.Is(err, errGenDead):
			g.rd.release()
		case errors.Is(err, ErrProtocol):
			c.fail(err)
			return 0, err
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Our deadline, or one moved meanwhile: the loop decides.
		default:
			g.rd.release()
			var a after
			c.mu.Lock()
			c.lostLocked(g, err, &a)
			c.mu.Unlock()
			c.run(&a)
		}
	}
}

// readGen reads records from g until it has data for p, an error, or the
// generation is replaced (errGenDead). A close record returns
// errCloseRecord.
func (c *resumableConn) readGen(g *resumeGen, p []byte) (int, error) {
	for {
		if g.recLeft == 0 {
			if g.hdrNeed == 0 {
				g.hdrNeed = 1
			}
			for g.hdrN < g.hdrNeed {
				n, err := g.rd.Read(g.hdr[g.hdrN:g.hdrNeed])
				g.hdrN += n
				if err != nil {
					return 0, err
				}
				if g.hdrN == 1 {
					switch g.hdr[0] {
					case recData:
						g.hdrNeed = 5
					case recAck:
						g.hdrNeed = 9
					case recPing, recPong, recClose:
					default:
						return 0, fmt.Errorf("%w: resumption layer: unknown record type %d", ErrProtocol, g.hdr[0])
					}
				}
			}
			g.hdrN, g.hdrNeed = 0, 0
			var err error
			switch g.hdr[0] {
			case recData:
				n := binary.BigEndian.Uint32(g.hdr[1:5])
				if n == 0 || n > resumeMaxReceivedRecord {
					return 0, fmt.Errorf("%w: resumption layer: data record of %d bytes", ErrProtocol, n)
				}
				g.recLeft = n
			case recAck:
				err = c.gotAck(g, binary.BigEndian.Uint64(g.hdr[1:9]))
			default:
				err = c.gotControl(g, g.hdr[0])
			}
			if err != nil {
				return 0, err
			}
			continue
		}
		m := min(len(p), int(g.recLeft))
		n, err := g.rd.Read(p[:m])
		if n == 0 {
			return 0, err
		}
		c.mu.Lock()
		if g.dead {
			c.mu.Unlock()
			return 0, errGenDead
		}
		g.recLeft -= uint32(n)
		c.recvd += uint64(n)
		c.rxAll++
		c.rxAct++
		if c.recvd-c.ackSent >= c.ackEvery {
			signal(c.pumpWake)
		} else if !c.ackArmed {
			c.ackArmed = true
			if c.ackTimer == nil {
				c.ackTimer = time.AfterFunc(resumeAckDelay, c.ackDelayed)
			} else {
				c.ackTimer.Reset(resumeAckDelay)
			}
		}
		c.armLiveLocked()
		c.mu.Unlock()
		return n, nil
	}
}

// gotAck applies the peer's acknowledgement of n bytes.
func (c *resumableConn) gotAck(g *resumeGen, n uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g.dead {
		return errGenDead
	}
	if n > c.sentMax {
		return fmt.Errorf("%w: resumption layer: acknowledgement of %d bytes, %d sent", ErrProtocol, n, c.sentMax)
	}
	c.rxAll++
	if n > c.acked {
		c.acked = n
		c.releaseLocked()
		signal(c.writeWake)
	}
	c.armLiveLocked()
	return nil
}

// gotControl applies a ping, pong or close record. A close record returns
// errCloseRecord.
func (c *resumableConn) gotControl(g *resumeGen, typ byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g.dead {
		return errGenDead
	}
	c.rxAll++
	switch typ {
	case recPing:
		c.pongDue = true
		signal(c.pumpWake)
	case recPong:
		c.pingOut = false
	case recClose:
		c.peerClosed = true
		signal(c.pumpWake)
		return errCloseRecord
	}
	return nil
}

// ackDelayed is the delayed-acknowledgement timer.
func (c *resumableConn) ackDelayed() {
	c.mu.Lock()
	c.ackArmed = false
	c.ackFired = true
	signal(c.pumpWake)
	c.mu.Unlock()
}

// releaseLocked frees the replay buffer's chunks that the peer has
// acknowledged and the pump is not writing from.
func (c *resumableConn) releaseLocked() {
	upTo := c.acked
	if c.writing && c.writeFrom < upTo {
		upTo = c.writeFrom
	}
	c.buf.release(upTo)
}

// Write copies p into the replay buffer, from which the pump sends it, and
// returns; it blocks only while the buffer is full (ReplayBuffer bytes not
// yet acknowledged), also while the connection is being re-established.
// It returns [ErrTimeout] at the write deadline (time spent reconnecting
// does not count towards it: spec.md §13.6), with the bytes it copied
// until then, and the connection's error once it is done.
func (c *resumableConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	n := 0
	for {
		c.mu.Lock()
		var err error
		now := time.Now()
		eff := c.effLocked(c.wdl, now)
		switch {
		case c.localClosed:
			err = errResumeClosed
		case c.phase == phaseDone:
			err = c.err
		case c.closeQueued:
			err = fmt.Errorf("yamux: write after CloseWrite: %w", net.ErrClosed)
		case !eff.IsZero() && !now.Before(eff):
			err = ErrTimeout
		}
		if err != nil || len(p) == 0 {
			c.mu.Unlock()
			return n, err
		}
		if room := c.rc.replayBuffer() - int(c.buf.end-c.acked); room > 0 {
			m := min(room, len(p)-n)
			c.buf.write(p[n : n+m])
			n += m
			signal(c.pumpWake)
			if n == len(p) {
				c.mu.Unlock()
				return n, nil
			}
		}
		paused := c.phase == phaseReconnecting
		c.mu.Unlock()
		waitWake(c.writeWake, eff, paused, &c.writeTimer)
	}
}

// sendScratch lends the pump a contiguous buffer for connections without
// vectored writes (TLS, pipes), so that a record is one Write.
var sendScratch = sync.Pool{New: func() any { b := make([]byte, 0, resumeMaxSendRecord+32); return &b }}

// pump is the only writer of the current generation: data from the
// replay buffer, the acknowledgements the reader asks for, probes and
// their answers, and the close record. It frees the replay buffer when the
// connection is done.
func (c *resumableConn) pump() {
	defer close(c.pumpDone)
	var head [14]byte       // an acknowledgement, then a data record's header
	var tail [3]byte        // pong, ping, close
	var vec, wv net.Buffers // wv escapes once, here, not per write
	for {
		c.mu.Lock()
		if c.phase == phaseDone {
			c.buf.free()
			c.mu.Unlock()
			return
		}
		g := c.gen
		if g == nil {
			c.mu.Unlock()
			<-c.pumpWake
			continue
		}
		h, t := head[:0], tail[:0]
		vec = vec[:0]
		hasData := c.buf.end > c.sent
		sendAck := c.recvd > c.ackSent && (c.recvd-c.ackSent >= c.ackEvery || c.ackFired || hasData || c.pongDue)
		ackVal := c.recvd
		if sendAck {
			h = append(h, recAck)
			h = binary.BigEndian.AppendUint64(h, ackVal)
		}
		dataLen := 0
		if hasData {
			h = append(h, recData, 0, 0, 0, 0)
			vec = append(vec, nil) // the head, below
			vec, dataLen = c.buf.segments(c.sent, resumeMaxSendRecord, vec)
			binary.BigEndian.PutUint32(h[len(h)-4:], uint32(dataLen))
		}
		pong, ping := c.pongDue, c.pingDue
		if pong {
			t = append(t, recPong)
		}
		if ping {
			t = append(t, recPing)
		}
		sendClose := c.closeQueued && !c.closeSent && c.sent+uint64(dataLen) == c.buf.end
		if sendClose {
			t = append(t, recClose)
		}
		c.ackFired = false
		if len(h) == 0 && len(t) == 0 {
			c.mu.Unlock()
			<-c.pumpWake
			continue
		}
		c.pongDue, c.pingDue = false, false
		c.writing, c.writeFrom = true, c.sent
		// The peer may acknowledge bytes of this write before it returns:
		// what is handed to the network counts as sent.
		c.sentMax = max(c.sentMax, c.sent+uint64(dataLen))
		c.mu.Unlock()

		if hasData {
			vec[0] = h
		} else {
			vec = append(vec, h)
		}
		if len(t) > 0 {
			vec = append(vec, t)
		}
		wv = vec // WriteTo consumes what it is given; vec keeps its room
		err := writeRecords(g, &wv)
		clear(vec[:cap(vec)])

		var a after
		c.mu.Lock()
		c.writing = false
		if err != nil {
			c.lostLocked(g, err, &a)
		} else if c.gen == g {
			c.sent += uint64(dataLen)
			if sendAck {
				c.ackSent = max(c.ackSent, ackVal)
			}
			if sendClose {
				c.closeSent = true
				close(c.closeSentCh)
			}
			if dataLen > 0 || sendAck || sendClose {
				c.txAct++
			}
			c.armLiveLocked()
		}
		c.releaseLocked()
		c.mu.Unlock()
		c.run(&a)
	}
}

// writeRecords writes vec to g's connection: vectored where the
// connection has writev, else copied into one buffer.
func writeRecords(g *resumeGen, vec *net.Buffers) error {
	if g.vectored {
		_, err := vec.WriteTo(g.conn)
		return err
	}
	bp := sendScratch.Get().(*[]byte)
	b := (*bp)[:0]
	for _, v := range *vec {
		b = append(b, v...)
	}
	_, err := g.conn.Write(b)
	*bp = b[:0]
	sendScratch.Put(bp)
	return err
}

// liveTick is the period of the liveness check.
func (c *resumableConn) liveTick() time.Duration { return c.rc.ackTimeout() / 4 }

// armLiveLocked starts the liveness check if it is not running.
func (c *resumableConn) armLiveLocked() {
	if c.liveArmed || c.phase != phaseConnected || c.rc.ackTimeout() <= 0 {
		return
	}
	c.liveArmed = true
	c.lastRxAll, c.lastRxAct, c.lastTxAct = c.rxAll, c.rxAct, c.txAct
	c.silent, c.idle = 0, 0
	if c.liveTimer == nil {
		c.liveTimer = time.AfterFunc(c.liveTick(), c.liveCheck)
	} else {
		c.liveTimer.Reset(c.liveTick())
	}
}

// liveCheck runs every liveTick while the connection carries traffic: it
// declares the connection dead after AckTimeout in which nothing arrived,
// probes the peer after half of it, and stops once the connection has
// been idle both ways for AckTimeout with nothing awaiting an answer
// (spec.md §13.4).
func (c *resumableConn) liveCheck() {
	var a after
	c.mu.Lock()
	c.liveArmed = false
	g := c.gen
	if c.phase != phaseConnected || g == nil {
		c.mu.Unlock()
		return
	}
	tick, limit := c.liveTick(), c.rc.ackTimeout()
	if c.rxAll != c.lastRxAll {
		c.lastRxAll, c.silent = c.rxAll, 0
	} else {
		c.silent += tick
	}
	if c.rxAct != c.lastRxAct || c.txAct != c.lastTxAct {
		c.lastRxAct, c.lastTxAct, c.idle = c.rxAct, c.txAct, 0
	} else {
		c.idle += tick
	}
	waiting := c.buf.end > c.acked || c.pingOut
	switch {
	case c.silent >= limit:
		c.lostLocked(g, fmt.Errorf("yamux: resumption layer: nothing received for %v", c.silent), &a)
	case !waiting && c.idle >= limit:
		// idle both ways: stop watching until traffic resumes
	default:
		if c.silent >= limit/2 && !c.pingOut {
			c.pingDue, c.pingOut = true, true
			signal(c.pumpWake)
		}
		c.liveArmed = true
		c.liveTimer.Reset(tick)
	}
	c.mu.Unlock()
	c.run(&a)
}

// reconnectLoop re-establishes a client's lost connection: it dials and
// resumes, with exponential backoff and jitter between attempts, until it
// succeeds, the server refuses, ResumeTimeout passes, or the connection
// is closed.
func (c *resumableConn) reconnectLoop() {
	defer c.wg.Done()
	ctx, cancel := c.ctx, context.CancelFunc(func() {})
	if t := c.rc.resumeTimeout(); t > 0 {
		ctx, cancel = context.WithTimeout(c.ctx, t)
	}
	defer cancel()
	lo, hi := c.rc.backoff()
	pause := lo
	for {
		err := c.tryResume(ctx)
		if err == nil || c.ctx.Err() != nil {
			return // resumed, or closed meanwhile
		}
		if ctx.Err() != nil {
			c.fail(fmt.Errorf("%w (%v); last attempt: %v", ErrResumeTimeout, c.rc.resumeTimeout(), err))
			return
		}
		if !isTransientResumeError(err) {
			c.logger.Info("yamux: resumption failed", "err", err)
			c.fail(err)
			return
		}
		c.logger.Debug("yamux: resumption attempt failed", "err", err, "pause", pause)
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		pause = min(2*pause, hi)
	}
}

// tryResume makes one attempt: dial, handshake, install.
func (c *resumableConn) tryResume(ctx context.Context) error {
	c.mu.Lock()
	c.attempts++
	recvd := c.recvd
	c.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if t := c.rc.handshakeTimeout(); t > 0 {
		hctx, cancel = context.WithTimeout(ctx, t)
	}
	defer cancel()
	raw, err := c.dial(hctx)
	if err != nil {
		return fmt.Errorf("yamux: resumption dial: %w", err)
	}
	res, err := clientResume(hctx, raw, &c.rc, c.id, c.secret, recvd)
	if err != nil {
		closeRaw(raw)
		return err
	}
	return c.install(raw, res.peerRecvd, recvd)
}

// install makes raw, on which a resumption handshake succeeded, the
// current generation: the peer has received peerRecvd bytes, we told it we
// received recvd.
func (c *resumableConn) install(raw net.Conn, peerRecvd, recvd uint64) error {
	var a after
	c.mu.Lock()
	if c.phase != phaseReconnecting || c.recvd != recvd {
		c.mu.Unlock()
		closeRaw(raw)
		return errResumeClosed
	}
	if peerRecvd < c.acked || peerRecvd > c.sentMax {
		err := fmt.Errorf("%w: the peer resumes at byte %d, outside %d..%d", ErrResumeRefused, peerRecvd, c.acked, c.sentMax)
		c.finishLocked(err, &a)
		a.conns = append(a.conns, raw)
		c.mu.Unlock()
		c.run(&a)
		return err
	}
	c.offline += time.Since(c.offSince)
	c.gen = c.newGenLocked(raw)
	c.phase = phaseConnected
	c.replayed += c.sentMax - peerRecvd
	c.reconnects++
	c.acked = max(c.acked, peerRecvd)
	c.sent = peerRecvd
	c.ackSent = c.recvd
	c.releaseLocked()
	c.resuming, c.expirePending = false, nil
	if c.detachTimer != nil {
		c.detachTimer.Stop()
	}
	c.detachArmed = false
	if c.srv != nil {
		c.srv.attachLocked(c)
	}
	c.stateChangedLocked()
	replay := c.sentMax - peerRecvd
	c.mu.Unlock()
	c.logger.Info("yamux: connection resumed", "client", c.client, "replayed", replay)
	return nil
}

// detachLocked registers a server's connection as waiting for its client
// and arms its ResumeTimeout.
func (c *resumableConn) detachLocked(a *after) {
	c.detachEpoch++
	epoch := c.detachEpoch
	victim, vEpoch, closed := c.srv.detachLocked(c, epoch)
	if closed {
		c.finishLocked(errListenerClosed, a)
		return
	}
	a.evict, a.evictEpoch = victim, vEpoch
	c.detachArmed = true
	if t := c.rc.resumeTimeout(); t > 0 {
		c.detachTimer = time.AfterFunc(t, func() { c.expire(epoch, ErrResumeTimeout) })
	}
}

// expire ends a server's detached connection with err, unless it was
// resumed since it was detached for the epoch-th time.
func (c *resumableConn) expire(epoch uint64, err error) {
	var a after
	c.mu.Lock()
	if c.phase == phaseReconnecting && c.detachEpoch == epoch {
		if c.resuming {
			c.expirePending = err
		} else {
			c.finishLocked(err, &a)
		}
	}
	c.mu.Unlock()
	c.run(&a)
}

// beginResume checks a resumption request whose proof was verified: the
// client has received peerRecvd bytes. If the request is consistent it
// cuts the current connection, if any, and returns the bytes we received;
// the caller then answers and calls install or abortResume.
func (c *resumableConn) beginResume(peerRecvd uint64) (uint64, bool) {
	var a after
	c.mu.Lock()
	ok := c.phase != phaseDone && !c.resuming && !c.peerClosed && !c.closeSent && !c.localClosed &&
		peerRecvd >= c.acked && peerRecvd <= c.sentMax
	if ok {
		if c.phase == phaseConnected {
			// The client saw the loss first: cut our end of it.
			g := c.gen
			g.dead = true
			a.conns = append(a.conns, g.conn)
			c.gen = nil
			c.phase = phaseReconnecting
			c.offSince = time.Now()
			c.stopTimersLocked()
			c.stateChangedLocked()
		}
		c.resuming = true
	}
	recvd := c.recvd
	c.mu.Unlock()
	c.run(&a)
	return recvd, ok
}

// abortResume undoes beginResume after the answer could not be written.
func (c *resumableConn) abortResume() {
	var a after
	c.mu.Lock()
	c.resuming = false
	if c.phase == phaseReconnecting {
		switch {
		case c.expirePending != nil:
			c.finishLocked(c.expirePending, &a)
		case !c.detachArmed:
			c.detachLocked(&a)
		}
	}
	c.mu.Unlock()
	c.run(&a)
}

// CloseWrite sends a close record after what was written: the peer reads
// io.EOF after the data, and neither end resumes the connection any more
// (spec.md §13.3). Later Writes fail. Reads continue.
func (c *resumableConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.localClosed:
		return errResumeClosed
	case c.phase == phaseDone:
		return c.err
	}
	c.closeQueued = true
	signal(c.pumpWake)
	return nil
}

// closeFlushMax bounds Close's flush in all; closeFlushLimit (50 ms)
// bounds it while it makes no progress.
const closeFlushMax = time.Second

// Close ends the connection for good. When connected, it first lets the
// pump write what Write accepted and a close record, as a TCP close lets
// the kernel send what was written: it waits while that makes progress
// (writes complete or acknowledgements arrive), at most closeFlushLimit
// (50 ms) without progress and closeFlushMax (1 s) in all; then, if no
// Read is in progress, it half-closes the network connection and waits
// up to closeFlushLimit for the peer's end (so that a TCP reset does not
// destroy what it sent), and closes it. A connection being re-established is dropped at
// once (a server forgets it; a client stops dialing). It waits for the
// connection's goroutines and always returns nil.
func (c *resumableConn) Close() error {
	c.mu.Lock()
	if !c.localClosed {
		c.localClosed = true
		deadline := time.Now().Add(closeFlushMax)
		if c.phase == phaseConnected && !c.closeSent {
			c.closeQueued = true
			signal(c.pumpWake)
			c.flushLocked(deadline)
		}
		// Closing a socket with the peer's bytes unread resets it, and a
		// reset can destroy what we sent in the peer's receive queue. With
		// no Read in progress to consume them, wait for the peer's end.
		if g := c.gen; g != nil && c.closeSent && !c.peerClosed && c.readMu.TryLock() {
			c.mu.Unlock()
			lingerDrain(g, time.Now().Add(closeFlushLimit))
			c.readMu.Unlock()
			c.mu.Lock()
		}
		var a after
		c.finishLocked(errResumeClosed, &a)
		c.mu.Unlock()
		c.run(&a)
	} else {
		c.mu.Unlock()
	}
	<-c.pumpDone
	c.wg.Wait()
	return nil
}

// lingerDrain half-closes g's connection and reads and discards what the
// peer still sends until it closes its end or deadline passes. The caller
// holds readMu.
func lingerDrain(g *resumeGen, deadline time.Time) {
	if cw, ok := g.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	g.conn.SetReadDeadline(deadline)
	var buf [512]byte
	for {
		if _, err := g.rd.Read(buf[:]); err != nil {
			break
		}
	}
	g.rd.release()
}

// flushLocked waits, releasing mu meanwhile, until the close record is
// written, the connection is lost, the flush makes no progress for
// closeFlushLimit, or deadline passes.
func (c *resumableConn) flushLocked(deadline time.Time) {
	for !c.closeSent && c.phase == phaseConnected {
		progress := c.acked + c.txAct
		sent, changed := c.closeSentCh, c.stateCh
		wait := min(closeFlushLimit, time.Until(deadline))
		if wait <= 0 {
			return
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-sent:
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		if c.acked+c.txAct == progress && !c.closeSent {
			return
		}
	}
}

// LocalAddr returns the local address of the current (or last) network
// connection.
func (c *resumableConn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

// RemoteAddr returns the remote address of the current (or last) network
// connection.
func (c *resumableConn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote
}

// SetDeadline sets both deadlines.
func (c *resumableConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; time spent reconnecting after
// this call does not count towards it.
func (c *resumableConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	now := time.Now()
	c.rdl = connDeadline{t, c.offlineLocked(now)}
	if g := c.gen; g != nil {
		g.conn.SetReadDeadline(c.effLocked(c.rdl, now))
	}
	c.mu.Unlock()
	signal(c.readWake)
	return nil
}

// SetWriteDeadline sets the write deadline, which bounds a Write's wait
// for room in the replay buffer; time spent reconnecting after this call
// does not count towards it. A deadline in the past makes a blocked Write
// return at once.
func (c *resumableConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = connDeadline{t, c.offlineLocked(time.Now())}
	c.mu.Unlock()
	signal(c.writeWake)
	return nil
}

func (c *resumableConn) resumeState() (bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phase == phaseReconnecting, c.stateCh
}

func (c *resumableConn) connectionLost() bool {
	var a after
	c.mu.Lock()
	if c.phase == phaseConnected {
		c.lostLocked(c.gen, ErrKeepAliveTimeout, &a)
	}
	alive := c.phase != phaseDone
	c.mu.Unlock()
	c.run(&a)
	return alive
}

func (c *resumableConn) stats() ResumeStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ResumeStats{
		Reconnecting:  c.phase == phaseReconnecting,
		Reconnects:    c.reconnects,
		Attempts:      c.attempts,
		ReplayedBytes: c.replayed,
		Unacked:       int(c.buf.end - c.acked),
		BufferHeld:    c.buf.held(),
	}
}

// heldBytes is the replay buffer's memory, for the server's stats.
func (c *resumableConn) heldBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.held()
}
