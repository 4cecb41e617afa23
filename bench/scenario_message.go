package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	yamux "github.com/d5da5f0f/yamux"
)

// Scenario 8: one message per stream, delivered whole and answered with
// one byte. Ours sends with Session.Send (answer once the message is
// received) or Session.SendAck (answer once the handler returned) to a
// Router (spec.md §10); hashicorp/yamux and libp2p/go-yamux, which have no
// message API, run the same pattern written by hand on their streams: open
// a stream, write a 4-byte big-endian length and the message, close the
// write side, read one answer byte. The receiving handler does nothing
// with the message but count it.

// messageSizes are the message sizes of scenario 8.
var messageSizes = []int{128, 64 << 10}

// messageChannel is the channel the Router serves.
const messageChannel = "bench"

// msgProto sends one message per stream and receives them.
type msgProto interface {
	// serve receives one message on an accepted stream and closes it.
	serve(s net.Conn)
	// send sends data as one message over cli and waits for the answer.
	send(ctx context.Context, cli session, w *msgWorker) error
	// delivered counts the messages handed to the handler.
	delivered() uint64
}

// msgCase is one row of scenario 8: a mode, an implementation and how the
// messages are carried.
type msgCase struct {
	mode  string // send: answer on receipt; ack: answer after the handler; stream: ours, by hand
	im    impl
	proto func() msgProto
}

// msgCases: ours through its API in both modes and by hand (mode=stream,
// the cost of the §10 layer against the bare pattern), hashicorp and
// libp2p by hand in both modes (the answer byte before or after the
// handler, which does nothing, so the two cost the same).
func msgCases() []msgCase {
	ours, hashicorp, libp2p := muxImpl{oursMuxer{}}, muxImpl{hashicorpMuxer{}}, muxImpl{libp2pMuxer{}}
	var cs []msgCase
	for _, mode := range []string{"send", "ack"} {
		ack := mode == "ack"
		cs = append(cs,
			msgCase{mode, ours, func() msgProto { return newRouterMsg(ack) }},
			msgCase{mode, hashicorp, func() msgProto { return newStreamMsg(ack) }},
			msgCase{mode, libp2p, func() msgProto { return newStreamMsg(ack) }},
		)
	}
	return append(cs, msgCase{"stream", ours, func() msgProto { return newStreamMsg(true) }})
}

// routerMsg sends with Session.Send or SendAck to a Router.
type routerMsg struct {
	ack    bool
	router *yamux.Router
}

func newRouterMsg(ack bool) *routerMsg {
	r := &yamux.Router{}
	r.HandleMessage(messageChannel, func(yamux.Message) {})
	return &routerMsg{ack: ack, router: r}
}

func (p *routerMsg) serve(s net.Conn) {
	st := s.(*yamux.Stream)
	p.router.ServeStream(st)
	st.Close()
}

func (p *routerMsg) send(ctx context.Context, cli session, w *msgWorker) error {
	sess := cli.(oursSession).s
	if p.ack {
		return sess.SendAck(ctx, messageChannel, w.data)
	}
	return sess.Send(ctx, messageChannel, w.data)
}

func (p *routerMsg) delivered() uint64 { return p.router.Stats().MessagesDelivered }

// streamMsg is the pattern by hand: length, message, half-close; the
// receiver reads the length, the message and EOF, and answers one byte
// before (ack false) or after (ack true) handing it over.
type streamMsg struct {
	ack   bool
	count atomic.Uint64
}

func newStreamMsg(ack bool) *streamMsg { return &streamMsg{ack: ack} }

// maxHandMessage is the receiver's limit, as a real one would have.
const maxHandMessage = 1 << 20

func (p *streamMsg) serve(s net.Conn) {
	defer s.Close()
	var hdr [4]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxHandMessage {
		return
	}
	data := make([]byte, n) // the handler's, as with a Router
	if _, err := io.ReadFull(s, data); err != nil {
		return
	}
	if m, err := s.Read(hdr[:1]); m != 0 || err != io.EOF {
		return // not exactly n bytes before FIN
	}
	if !p.ack {
		// Handed over whatever the Write says: hashicorp/yamux's may
		// report the session closing although the byte went out.
		s.Write([]byte{0})
	}
	p.count.Add(1) // the handler
	if p.ack {
		s.Write([]byte{0})
	}
}

func (p *streamMsg) send(ctx context.Context, cli session, w *msgWorker) error {
	c, err := cli.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	binary.BigEndian.PutUint32(w.buf, uint32(len(w.data)))
	copy(w.buf[4:], w.data) // one Write, as Session.Send does up to 64 KiB
	if _, err := c.Write(w.buf); err != nil {
		return err
	}
	if err := halfClose(c); err != nil {
		return err
	}
	var ans [1]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		return err
	}
	if ans[0] != 0 {
		return fmt.Errorf("answer %d", ans[0])
	}
	return nil
}

func (p *streamMsg) delivered() uint64 { return p.count.Load() }

// halfClose closes c's write side: CloseWrite where the stream has it;
// hashicorp/yamux's Stream.Close is itself a half-close (reads go on).
func halfClose(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// msgWorker is one sending goroutine's state.
type msgWorker struct {
	data []byte // the message
	buf  []byte // length and message, for the hand-written pattern
}

// msgRig is scenario 8: conc goroutines each sending one message per op.
// The server accepts in one goroutine and serves each stream in its own.
type msgRig struct {
	ep       *endpoints
	proto    msgProto
	calls    *callPool[msgWorker]
	serverWG sync.WaitGroup
	sent     atomic.Uint64
	wd       *watchdog
}

func newMsgRig(im impl, proto msgProto, size, conc int) (*msgRig, error) {
	ep, err := im.connect(nil, options{streams: 2 * conc})
	if err != nil {
		return nil, err
	}
	g := &msgRig{ep: ep, proto: proto}
	g.wd = startWatchdog(stallLimit, ep)
	g.serverWG.Add(1)
	go func() {
		defer g.serverWG.Done()
		for {
			s, err := ep.srv.accept()
			if err != nil {
				return // the session was closed
			}
			g.serverWG.Add(1)
			go func() {
				defer g.serverWG.Done()
				proto.serve(s)
			}()
		}
	}()
	data := fill(size)
	g.calls = newCallPool(conc, g.wd,
		func() *msgWorker { return &msgWorker{data: data, buf: make([]byte, 4+size)} },
		g.message)
	return g, nil
}

// message sends one message.
func (g *msgRig) message(w *msgWorker) error {
	err := g.proto.send(context.Background(), g.ep.cli, w)
	g.sent.Add(1)
	return err
}

// op sends one message (see callPool).
func (g *msgRig) op() error { return g.calls.op() }

// finish waits for the messages in flight and returns the first error.
func (g *msgRig) finish() error { return g.calls.finish() }

// latencies returns every message's latency, sorted. Call after finish.
func (g *msgRig) latencies() []time.Duration { return g.calls.latencies() }

// close ends the rig. It fails when the receiver did not hand over every
// message that was answered (Send's answer may come just before its
// handler runs, so the count is taken after the server's goroutines have
// returned).
func (g *msgRig) close() error {
	ferr := g.finish()
	g.wd.stop()
	err := g.ep.close()
	g.serverWG.Wait()
	if ferr != nil {
		return ferr
	}
	if sent, got := g.sent.Load(), g.proto.delivered(); got != sent {
		err = errors.Join(err, fmt.Errorf("%d messages answered, %d handed over", sent, got))
	}
	return err
}
