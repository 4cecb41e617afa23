// Command rpc shows net/rpc with the msgpack codec over yamux, the way
// Consul and Nomad run their RPC: one TCP connection per pair of hosts, and
// RPC traffic on streams inside it. Two ways to use the streams are
// compared:
//
//   - stream-per-call: every call opens a new stream and a new rpc.Client,
//     and closes both after the reply. A large reply then never holds up
//     another behind it on a shared stream, at the cost of a stream open
//     (a SYN the caller does not wait for) and a new codec per call.
//   - stream-per-conn: one rpc.Client over one stream serves every call;
//     net/rpc matches replies to calls by sequence number.
//
// It runs a bounded number of calls, -c at a time, and prints calls/s:
//
//	go run ./examples/rpc -mode stream-per-call
//	go run ./examples/rpc -mode stream-per-conn -n 20000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d5da5f0f/yamux"
	"github.com/hashicorp/go-msgpack/v2/codec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "rpc:", err)
		os.Exit(1)
	}
}

const (
	streamPerCall = "stream-per-call"
	streamPerConn = "stream-per-conn"
)

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("rpc", flag.ContinueOnError)
	mode := fs.String("mode", streamPerCall, streamPerCall+" or "+streamPerConn)
	n := fs.Int("n", 2000, "calls to make")
	c := fs.Int("c", 8, "calls in flight at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode != streamPerCall && *mode != streamPerConn {
		return fmt.Errorf("unknown -mode %q; want %s or %s", *mode, streamPerCall, streamPerConn)
	}
	if *n < 1 || *c < 1 {
		return errors.New("-n and -c must be positive")
	}
	res, err := runLocal(ctx, *mode, *n, *c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d calls (%d at a time) on %d stream(s) over 1 TCP connection in %v: %.0f calls/s\n",
		*mode, res.calls, *c, res.streams, res.elapsed.Round(time.Millisecond),
		float64(res.calls)/res.elapsed.Seconds())
	return nil
}

// handle is the msgpack configuration both ends must share; Consul and
// Nomad set these two options too.
var handle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true                            // decode strings into interface{} as string, not []byte
	h.MapType = reflect.TypeOf(map[string]any(nil)) // and maps as map[string]any
	return h
}()

// rpcStream is the stream an RPC codec runs on. It works around a bug in
// go-msgpack's rpc codec (v2.1.5): once closed, the codec answers every
// read with the error its Close got from the stream, so when that error is
// nil, net/rpc's reading goroutine (Client.input, or ServeCodec after a
// failed reply) reads "successfully" forever, spinning a CPU and never
// exiting. A Close that reports net.ErrClosed after closing the stream
// makes those reads fail and the goroutine end. Client.Close returns that
// error; the example ignores it.
type rpcStream struct{ net.Conn }

func (s rpcStream) Close() error {
	if err := s.Conn.Close(); err != nil {
		return err
	}
	return net.ErrClosed
}

// Args and Sum are the request and reply of Arith.Add.
type Args struct{ A, B int }
type Sum struct{ N int }

// Arith is the RPC service.
type Arith struct{}

// Add sets sum to args.A + args.B.
func (Arith) Add(args Args, sum *Sum) error {
	sum.N = args.A + args.B
	return nil
}

// result is what one run observed.
type result struct {
	calls   int           // calls that returned the right sum
	streams int64         // streams the server accepted
	elapsed time.Duration // time for all calls, without setup
}

// runLocal serves Arith on a loopback port and makes n calls, c at a time.
func runLocal(ctx context.Context, mode string, n, c int) (result, error) {
	srv := rpc.NewServer()
	if err := srv.Register(Arith{}); err != nil {
		return result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	var streams atomic.Int64
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		serve(srv, ln, &streams)
	}()
	res, err := runClient(ctx, ln.Addr().String(), mode, n, c)
	// The client has closed its session, so the server's session ends;
	// after this every stream the server accepted has been counted.
	ln.Close()
	<-srvDone
	res.streams = streams.Load()
	return res, err
}

// serve accepts TCP connections until ln is closed and serves RPC on every
// stream of every session: ServeCodec reads the calls of one stream, runs
// each in its own goroutine, and returns when the client closes the
// stream. serve returns when all sessions have ended.
func serve(srv *rpc.Server, ln net.Listener, streams *atomic.Int64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // ln was closed
		}
		sess, err := yamux.Server(conn, nil)
		if err != nil {
			conn.Close()
			continue
		}
		wg.Go(func() {
			defer sess.Close()
			var streamWG sync.WaitGroup
			defer streamWG.Wait()
			for {
				st, err := sess.Accept() // ends when the client closes the session
				if err != nil {
					return
				}
				streams.Add(1)
				streamWG.Go(func() { srv.ServeCodec(codec.GoRpc.ServerCodec(rpcStream{st}, handle)) })
			}
		})
	}
}

// runClient opens one session to addr and makes n calls of Arith.Add, c at
// a time, in the given mode, checking every sum.
func runClient(ctx context.Context, addr, mode string, n, c int) (result, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return result{}, err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		conn.Close()
		return result{}, err
	}
	defer sess.Close()
	// Calls take no context; ending the session unblocks them.
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	var call func(ctx context.Context, args Args, sum *Sum) error
	switch mode {
	case streamPerCall:
		call = func(ctx context.Context, args Args, sum *Sum) error {
			st, err := sess.OpenStream(ctx)
			if err != nil {
				return err
			}
			// The client owns the stream: Close closes the codec and
			// so the stream, and the server's ServeCodec sees EOF.
			client := rpc.NewClientWithCodec(codec.GoRpc.ClientCodec(rpcStream{st}, handle))
			defer client.Close()
			return client.Call("Arith.Add", args, sum)
		}
	case streamPerConn:
		st, err := sess.OpenStream(ctx)
		if err != nil {
			return result{}, err
		}
		client := rpc.NewClientWithCodec(codec.GoRpc.ClientCodec(rpcStream{st}, handle))
		defer client.Close()
		call = func(_ context.Context, args Args, sum *Sum) error {
			return client.Call("Arith.Add", args, sum) // safe for concurrent use
		}
	}

	start := time.Now()
	sem := make(chan struct{}, c)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var sum Sum
			if err := call(ctx, Args{A: i, B: 2 * i}, &sum); err != nil {
				errs[i] = fmt.Errorf("call %d: %w", i, err)
			} else if sum.N != 3*i {
				errs[i] = fmt.Errorf("call %d: Add(%d, %d) = %d; want %d", i, i, 2*i, sum.N, 3*i)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	return result{calls: n, elapsed: elapsed}, nil
}
