// Command echo shows many concurrent streams sharing one TCP connection: a
// yamux server echoes every stream it accepts, and a client opens -streams
// streams at once, sends each a distinct payload and checks that exactly
// that payload comes back.
//
// By default both ends run in one process over a loopback listener:
//
//	go run ./examples/echo
//
// or as two processes (the server runs until interrupted):
//
//	go run ./examples/echo -listen 127.0.0.1:7000
//	go run ./examples/echo -connect 127.0.0.1:7000
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
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// run parses args and runs the server, the client, or both.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	listen := fs.String("listen", "", "only serve, on this address, until interrupted")
	connect := fs.String("connect", "", "only run the client, against this address")
	streams := fs.Int("streams", 100, "concurrent streams the client opens")
	size := fs.Int("size", 32<<10, "bytes each stream sends and expects back")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *listen != "" && *connect != "":
		return errors.New("use -listen or -connect, not both")
	case *streams < 1 || *size < 0:
		return errors.New("-streams must be positive and -size not negative")
	}

	if *connect != "" {
		return runClient(ctx, *connect, *streams, *size, stdout)
	}

	addr := *listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	if *listen != "" {
		return serve(ctx, ln) // closes ln when ctx ends
	}

	// One process: serve in the background until the client is done.
	srvCtx, cancel := context.WithCancel(ctx)
	srvErr := make(chan error, 1)
	go func() { srvErr <- serve(srvCtx, ln) }()
	err = runClient(ctx, ln.Addr().String(), *streams, *size, stdout)
	cancel()
	return errors.Join(err, <-srvErr)
}

// serve accepts TCP connections on ln and echoes every stream of every
// session until ctx ends. It closes ln and every session, and returns only
// when all the goroutines it started have finished.
func serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Accept takes no context: closing the listener is what unblocks it.
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil // asked to stop
			}
			return err
		}
		wg.Go(func() { serveConn(ctx, conn) })
	}
}

// serveConn runs the server end of one session: one goroutine per accepted
// stream, each copying the stream back to itself.
func serveConn(ctx context.Context, conn net.Conn) {
	sess, err := yamux.Server(conn, nil)
	if err != nil {
		conn.Close()
		return
	}
	var wg sync.WaitGroup
	for {
		// Returns when the client closes the session (an error wrapping
		// net.ErrClosed) or when ctx ends.
		st, err := sess.AcceptStream(ctx)
		if err != nil {
			break
		}
		wg.Go(func() {
			defer st.Close()
			// Copy until the client's CloseWrite (EOF); Close then sends
			// our FIN so the client's read ends too.
			io.Copy(st, st)
		})
	}
	// Close first: it unblocks handlers still reading when ctx ended.
	sess.Close()
	wg.Wait()
}

// runClient opens one session to addr, echoes n payloads over n concurrent
// streams and reports how long it took.
func runClient(ctx context.Context, addr string, n, size int, stdout io.Writer) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	// Stream reads take no context; ending the session unblocks them.
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = echoOnce(ctx, sess, payload(i, size)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "echoed %d streams x %d bytes over 1 TCP connection in %v\n",
		n, size, elapsed.Round(time.Millisecond))
	return nil
}

// echoOnce sends msg on a new stream and checks that the same bytes come
// back. It writes from a second goroutine while it reads: a client that
// wrote everything before reading would deadlock once msg outgrew the two
// streams' windows, because the server cannot read more until its echo is
// read.
func echoOnce(ctx context.Context, sess *yamux.Session, msg []byte) error {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(msg)
		if err == nil {
			err = st.CloseWrite() // the server sees EOF and finishes
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(st)
	if rerr != nil {
		st.Reset() // unblocks the writer if it is still waiting for window
	}
	if err := errors.Join(<-werr, rerr); err != nil {
		return fmt.Errorf("stream %d: %w", st.StreamID(), err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("stream %d: echoed %d bytes that differ from the %d sent", st.StreamID(), len(got), len(msg))
	}
	return nil
}

// payload returns size bytes that differ from stream to stream, so that a
// reply delivered on the wrong stream fails the comparison.
func payload(i, size int) []byte {
	p := make([]byte, size)
	prefix := fmt.Sprintf("stream %d;", i)
	for j := range p {
		p[j] = prefix[j%len(prefix)]
	}
	return p
}
