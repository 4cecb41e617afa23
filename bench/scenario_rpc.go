package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// RPC sizes (scenario 3).
const (
	rpcRequestSize  = 128
	rpcResponseSize = 1 << 10
)

// rpcProto is how one request is carried on its own stream.
type rpcProto interface {
	// serve answers requests on one accepted stream and closes it.
	serve(s net.Conn)
	// call does one request on a freshly opened stream and closes it.
	call(c net.Conn, w *rpcWorker) error
}

// rawRPC: the client writes a 128 B request, reads the 1 KiB response and
// closes the stream; the server reads the request, writes the response and
// closes its end.
type rawRPC struct {
	resp []byte // read-only
	bufs sync.Pool
}

func newRawRPC() *rawRPC {
	return &rawRPC{
		resp: fill(rpcResponseSize),
		bufs: sync.Pool{New: func() any { return new([rpcRequestSize]byte) }},
	}
}

func (p *rawRPC) serve(s net.Conn) {
	defer s.Close()
	buf := p.bufs.Get().(*[rpcRequestSize]byte)
	defer p.bufs.Put(buf)
	if _, err := io.ReadFull(s, buf[:]); err != nil {
		return
	}
	s.Write(p.resp)
}

func (p *rawRPC) call(c net.Conn, w *rpcWorker) error {
	defer c.Close()
	if _, err := c.Write(w.req); err != nil {
		return err
	}
	_, err := io.ReadFull(c, w.resp)
	return err
}

// msgpackRPC is the same exchange as net/rpc calls with the msgpack codec
// of hashicorp/go-msgpack (codec.GoRpc: net/rpc's protocol, msgpack
// encoding), one stream per call as Consul does: a new rpc.Client per call.
type msgpackRPC struct {
	h    *codec.MsgpackHandle
	srv  *rpc.Server
	resp []byte
}

// echoService answers Echo.Call with a fixed 1 KiB body.
type echoService struct{ resp []byte }

// Call is the RPC method; net/rpc finds it by reflection.
func (e *echoService) Call(req []byte, resp *[]byte) error {
	if len(req) != rpcRequestSize {
		return fmt.Errorf("request of %d bytes, want %d", len(req), rpcRequestSize)
	}
	*resp = e.resp
	return nil
}

func newMsgpackRPC() (*msgpackRPC, error) {
	p := &msgpackRPC{h: &codec.MsgpackHandle{}, srv: rpc.NewServer(), resp: fill(rpcResponseSize)}
	if err := p.srv.RegisterName("Echo", &echoService{resp: p.resp}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *msgpackRPC) serve(s net.Conn) {
	p.srv.ServeCodec(codec.GoRpc.ServerCodec(codecConn{s}, p.h)) // returns at EOF and closes s
}

func (p *msgpackRPC) call(c net.Conn, w *rpcWorker) error {
	client := rpc.NewClientWithCodec(codec.GoRpc.ClientCodec(codecConn{c}, p.h))
	defer client.Close() // closes c
	var resp []byte
	if err := client.Call("Echo.Call", w.req, &resp); err != nil {
		return err
	}
	if len(resp) != rpcResponseSize {
		return fmt.Errorf("response of %d bytes, want %d", len(resp), rpcResponseSize)
	}
	return nil
}

// codecConn works around a go-msgpack v2.1.5 bug: after its rpc codec is
// closed, every read returns the error the connection's Close returned, so a
// Close that succeeded (nil) makes reads "succeed" forever. net/rpc's client
// input loop (and the server's request loop) then spins at 100% CPU if it
// was between two reads when the codec was closed. Returning an error from
// Close ends those loops.
type codecConn struct{ net.Conn }

func (c codecConn) Close() error {
	c.Conn.Close()
	return errCodecClosed
}

var errCodecClosed = errors.New("bench: rpc codec closed")

// rpcWorker is one client goroutine's state.
type rpcWorker struct {
	req, resp []byte
}

// rpcRig is scenario 3: conc client goroutines each doing one request per
// new stream. One op is one request. The server accepts in one goroutine and
// serves each stream in its own.
type rpcRig struct {
	ep       *endpoints
	proto    rpcProto
	conc     int
	calls    *callPool[rpcWorker]
	serverWG sync.WaitGroup
	wd       *watchdog
	started  time.Time
}

func newRPCRig(im impl, proto rpcProto, conc int) (*rpcRig, error) {
	ep, err := im.connect(nil, options{streams: 2 * conc})
	if err != nil {
		return nil, err
	}
	g := &rpcRig{ep: ep, proto: proto, conc: conc}
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
	req := fill(rpcRequestSize)
	g.calls = newCallPool(conc, g.wd,
		func() *rpcWorker { return &rpcWorker{req: req, resp: make([]byte, rpcResponseSize)} },
		g.request)
	return g, nil
}

// request does one request on a new stream.
func (g *rpcRig) request(w *rpcWorker) error {
	c, err := g.ep.cli.open(context.Background())
	if err != nil {
		return err
	}
	return g.proto.call(c, w)
}

// op does one request (see callPool).
func (g *rpcRig) op() error { return g.calls.op() }

// finish waits for requests in flight and returns the first error.
func (g *rpcRig) finish() error { return g.calls.finish() }

// latencies returns every request's latency, sorted. Call after close.
func (g *rpcRig) latencies() []time.Duration { return g.calls.latencies() }

func (g *rpcRig) close() error {
	ferr := g.calls.finish()
	g.wd.stop()
	err := g.ep.close()
	g.serverWG.Wait()
	if ferr != nil {
		return ferr
	}
	return err
}
