// Command grpc shows gRPC over yamux: a grpc.Server serves a yamux Session
// (a net.Listener), and a grpc.ClientConn dials by opening a stream
// (grpc.WithContextDialer over Session.DialContext). gRPC keeps one HTTP/2
// connection, so all its calls share one yamux stream; other streams of the
// same session carry raw bytes at the same time, opened the other way (the
// server side's Accept belongs to the gRPC server).
//
// The service is defined by hand, without protoc or generated code: a
// grpc.ServiceDesc and a codec for raw bytes (forced on both ends). It has
// a unary call, a server-streaming call and a bidirectional one.
//
//	go run ./examples/grpc
//	go run ./examples/grpc -n 2000 -raw 16
//	go run ./examples/grpc -bench -d 3s   # unary calls/s and p99: ours, hashicorp/yamux, TCP
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	n := fs.Int("n", 500, "unary calls to make")
	c := fs.Int("c", 8, "calls in flight at once")
	raw := fs.Int("raw", 8, "raw yamux streams echoed alongside the gRPC calls")
	bench := fs.Bool("bench", false, "measure unary calls/s and p99 over yamux (ours), hashicorp/yamux and plain TCP")
	d := fs.Duration("d", 2*time.Second, "with -bench: how long each transport is measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *c < 1 || *raw < 0 || *d <= 0 {
		return errors.New("-n, -c and -d must be positive, -raw not negative")
	}
	if *bench {
		return runBench(ctx, stdout, *c, *d)
	}
	start := time.Now()
	res, err := runLocal(ctx, *n, *c, *raw)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d unary calls, %d streamed replies, %d bidi echoes and %d raw streams over 1 TCP connection in %v\n",
		res.unary, res.streamed, res.bidi, res.raw, time.Since(start).Round(time.Millisecond))
	return nil
}

// result is what one run observed; every reply was checked.
type result struct {
	unary    int // unary calls answered
	streamed int // messages received from the server-streaming call
	bidi     int // messages echoed by the bidirectional call
	raw      int // raw yamux streams echoed
}

// runLocal starts a gRPC server behind a yamux session on a loopback TCP
// connection, and from the other end makes n unary calls (c at a time), a
// server-streaming and a bidirectional call, while raw streams are echoed
// on the same session.
func runLocal(ctx context.Context, n, c, raw int) (result, error) {
	clientSess, serverSess, err := sessionPair()
	if err != nil {
		return result{}, err
	}
	// GracefulStop closes serverSess (the listener) after the calls ended.
	srv := newServer()
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(serverSess) })
	defer func() {
		srv.GracefulStop()
		clientSess.Close()
		wg.Wait()
	}()

	// Raw streams, server to client: the client end echoes each one.
	wg.Go(func() { echoStreams(clientSess) })
	rawErr := make(chan error, 1)
	go func() { rawErr <- pushRaw(ctx, serverSess, raw) }()

	conn, err := dialGRPC(func(ctx context.Context, _ string) (net.Conn, error) {
		// The address is ignored: every stream goes to the session's peer.
		return clientSess.DialContext(ctx, "yamux", "")
	})
	if err != nil {
		return result{}, err
	}
	defer conn.Close()

	var res result
	var errs [4]error
	var calls sync.WaitGroup
	calls.Go(func() { errs[0] = unaryCalls(ctx, conn, n, c) })
	calls.Go(func() { res.streamed, errs[1] = countCall(ctx, conn, 100) })
	calls.Go(func() { res.bidi, errs[2] = chatCall(ctx, conn, 100) })
	calls.Wait()
	errs[3] = <-rawErr
	if err := errors.Join(errs[:]...); err != nil {
		return result{}, err
	}
	res.unary, res.raw = n, raw
	return res, nil
}

// sessionPair returns the two ends of a yamux session over a loopback TCP
// connection.
func sessionPair() (client, server *yamux.Session, err error) {
	c, s, err := tcpPair()
	if err != nil {
		return nil, nil, err
	}
	if server, err = yamux.Server(s, nil); err != nil {
		c.Close()
		s.Close()
		return nil, nil, err
	}
	if client, err = yamux.Client(c, nil); err != nil {
		c.Close()
		server.Close()
		return nil, nil, err
	}
	return client, server, nil
}

// tcpPair returns both ends of one loopback TCP connection.
func tcpPair() (client, server net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	a := <-ch
	if err != nil || a.err != nil {
		if client != nil {
			client.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		return nil, nil, errors.Join(err, a.err)
	}
	return client, a.c, nil
}

// dialGRPC makes a client connection whose transport is dial. The target
// is a placeholder: "passthrough" hands it to dial unresolved.
func dialGRPC(dial func(context.Context, string) (net.Conn, error)) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///yamux",
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	)
}

// unaryCalls makes n Echo calls, c at a time, and checks every reply.
func unaryCalls(ctx context.Context, conn *grpc.ClientConn, n, c int) error {
	sem := make(chan struct{}, c)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req := []byte("call " + strconv.Itoa(i))
			var resp []byte
			if err := conn.Invoke(ctx, echoMethod, &req, &resp); err != nil {
				errs[i] = fmt.Errorf("Echo %d: %w", i, err)
			} else if !bytes.Equal(resp, req) {
				errs[i] = fmt.Errorf("Echo %d: reply %q; want %q", i, resp, req)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// countCall asks the server to stream n numbered messages and checks them.
func countCall(ctx context.Context, conn *grpc.ClientConn, n int) (int, error) {
	cs, err := conn.NewStream(ctx, &serviceDesc.Streams[0], countMethod)
	if err != nil {
		return 0, err
	}
	req := []byte(strconv.Itoa(n))
	if err := cs.SendMsg(&req); err != nil {
		return 0, err
	}
	if err := cs.CloseSend(); err != nil {
		return 0, err
	}
	got := 0
	for {
		var msg []byte
		err := cs.RecvMsg(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, fmt.Errorf("Count: after %d messages: %w", got, err)
		}
		if want := strconv.Itoa(got); string(msg) != want {
			return got, fmt.Errorf("Count: message %q; want %q", msg, want)
		}
		got++
	}
	if got != n {
		return got, fmt.Errorf("Count: %d messages; want %d", got, n)
	}
	return got, nil
}

// chatCall sends n messages on a bidirectional call, reading each echo
// before the next is sent.
func chatCall(ctx context.Context, conn *grpc.ClientConn, n int) (int, error) {
	cs, err := conn.NewStream(ctx, &serviceDesc.Streams[1], chatMethod)
	if err != nil {
		return 0, err
	}
	for i := range n {
		req := []byte("chat " + strconv.Itoa(i))
		if err := cs.SendMsg(&req); err != nil {
			return i, fmt.Errorf("Chat send %d: %w", i, err)
		}
		var resp []byte
		if err := cs.RecvMsg(&resp); err != nil {
			return i, fmt.Errorf("Chat receive %d: %w", i, err)
		}
		if !bytes.Equal(resp, req) {
			return i, fmt.Errorf("Chat %d: echo %q; want %q", i, resp, req)
		}
	}
	if err := cs.CloseSend(); err != nil {
		return n, err
	}
	var extra []byte
	if err := cs.RecvMsg(&extra); err != io.EOF {
		return n, fmt.Errorf("Chat: after CloseSend got %v; want io.EOF", err)
	}
	return n, nil
}

// echoStreams accepts raw streams on sess until it closes and echoes each.
func echoStreams(sess *yamux.Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream(context.Background())
		if err != nil {
			return // the session closed
		}
		wg.Go(func() {
			defer st.Close()
			io.Copy(st, st) // until the peer's FIN
		})
	}
}

// pushRaw opens n raw streams on sess at once, writes 64 KiB on each,
// half-closes, and checks that the same bytes come back.
func pushRaw(ctx context.Context, sess *yamux.Session, n int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = echoOnce(ctx, sess, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func echoOnce(ctx context.Context, sess *yamux.Session, i int) error {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	payload := bytes.Repeat([]byte{byte(i)}, 64<<10)
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(payload)
		if err == nil {
			err = st.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(st)
	if err := errors.Join(err, <-werr); err != nil {
		return fmt.Errorf("raw stream %d: %w", i, err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("raw stream %d: %d bytes came back, not the %d sent", i, len(got), len(payload))
	}
	return nil
}
