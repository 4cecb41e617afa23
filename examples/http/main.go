// Command http shows HTTP/1.1 over yamux: many requests, on many streams,
// share one TCP connection. The server hands a yamux Session, which is a
// net.Listener, to an http.Server; the client's http.Transport dials by
// opening a stream instead of a TCP connection. It prints how many requests
// went over how many streams and TCP connections.
//
//	go run ./examples/http
//	go run ./examples/http -n 1000 -c 50
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
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
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(1)
	}
}

// stats is what one run observed.
type stats struct {
	requests int   // requests answered with the expected body
	streams  int64 // streams the client's transport opened
	tcpConns int64 // TCP connections the server accepted
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	n := fs.Int("n", 200, "requests to send")
	c := fs.Int("c", 20, "requests in flight at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *c < 1 {
		return errors.New("-n and -c must be positive")
	}
	start := time.Now()
	st, err := runLocal(ctx, *n, *c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d requests over %d yamux stream(s) over %d TCP connection(s) in %v\n",
		st.requests, st.streams, st.tcpConns, time.Since(start).Round(time.Millisecond))
	return nil
}

// runLocal starts a server on a loopback port, sends n requests from a
// client, c at a time, and shuts both down.
func runLocal(ctx context.Context, n, c int) (stats, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stats{}, err
	}
	srv := newServer()
	var tcpConns atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { serve(srv, ln, &tcpConns) })
	defer func() {
		// Close stops the accept loop (through ln), closes every session
		// (each is a listener of srv) and every open stream (each is a
		// connection of srv).
		ln.Close()
		srv.Close()
		wg.Wait()
	}()

	st, err := runClient(ctx, ln.Addr().String(), n, c)
	st.tcpConns = tcpConns.Load()
	return st, err
}

func newServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{i}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.PathValue("i"))
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// serve accepts TCP connections until ln is closed and serves HTTP on each
// through its own yamux session. One http.Server serves them all: Serve may
// run on several listeners at once, and srv.Close closes all of them.
func serve(srv *http.Server, ln net.Listener, tcpConns *atomic.Int64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // ln was closed
		}
		tcpConns.Add(1)
		sess, err := yamux.Server(conn, nil)
		if err != nil {
			conn.Close()
			continue
		}
		// Serve closes sess when it returns: when the client closes the
		// session, or srv is closed.
		wg.Go(func() { srv.Serve(sess) })
	}
}

// runClient opens one yamux session to addr and sends n GET requests
// through an http.Client, c at a time, checking every response body.
func runClient(ctx context.Context, addr string, n, c int) (stats, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return stats{}, err
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		conn.Close()
		return stats{}, err
	}
	defer sess.Close()

	var streams atomic.Int64
	tr := &http.Transport{
		// Every "connection" the transport wants is a new stream. The
		// address is ignored: all streams go to the session's peer.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			st, err := sess.OpenStream(ctx)
			if err != nil {
				// Not "return st, err": a nil *yamux.Stream in a
				// net.Conn interface is not a nil net.Conn.
				return nil, err
			}
			streams.Add(1)
			return st, nil
		},
		// Keep idle streams for reuse, as one would keep TCP connections.
		MaxIdleConnsPerHost: c,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	sem := make(chan struct{}, c)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = get(ctx, client, i)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return stats{}, err
	}
	return stats{requests: n, streams: streams.Load()}, nil
}

// get requests /hello/i and checks the body.
func get(ctx context.Context, client *http.Client, i int) error {
	// The host is a placeholder: DialContext ignores it.
	req, err := http.NewRequestWithContext(ctx, "GET", "http://yamux/hello/"+strconv.Itoa(i), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("hello %d", i); resp.StatusCode != http.StatusOK || string(body) != want {
		return fmt.Errorf("request %d: %s %q; want 200 OK %q", i, resp.Status, body, want)
	}
	return nil
}
