package yamux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/d5da5f0f/yamux"
)

// The server stops in the middle of a request: the client may open no new
// stream, but the request in flight completes before the session closes.
func ExampleSession_Shutdown() {
	c1, c2 := net.Pipe()
	client, _ := yamux.Client(c1, nil)
	server, _ := yamux.Server(c2, nil)
	defer client.Close()
	ctx := context.Background()

	st, _ := client.OpenStream(ctx)
	st.Write([]byte("request"))
	st.CloseWrite()
	inFlight, _ := server.AcceptStream(ctx)

	done := make(chan error, 1)
	go func() { done <- server.Shutdown(ctx) }()

	<-client.Draining() // the server's GoAway arrived
	_, err := client.OpenStream(ctx)
	fmt.Println("new stream refused:", errors.Is(err, yamux.ErrRemoteGoAway))

	req, _ := io.ReadAll(inFlight)
	fmt.Fprintf(inFlight, "response to %s", req)
	inFlight.Close()
	resp, _ := io.ReadAll(st)
	fmt.Println(string(resp))

	fmt.Println("shutdown:", <-done) // once the last stream finished
	<-client.Done()
	fmt.Println("client:", client.State())
	// Output:
	// new stream refused: true
	// response to request
	// shutdown: <nil>
	// client: closed
}

// A SessionServer serves every stream of every connection with one
// handler, and drains all sessions on Shutdown.
func ExampleSessionServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &yamux.SessionServer{
		Handler: yamux.StreamHandlerFunc(func(st *yamux.Stream) {
			name, _ := io.ReadAll(st) // until the client's CloseWrite
			fmt.Fprintf(st, "hello, %s", name)
		}), // the server closes the stream when the handler returns
		MaxSessions: 1000,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	client, _ := yamux.Client(conn, nil)
	st, _ := client.OpenStream(context.Background())
	st.Write([]byte("gopher"))
	st.CloseWrite()
	resp, _ := io.ReadAll(st)
	fmt.Println(string(resp))
	fmt.Println("sessions:", srv.NumSessions())

	client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println("serve:", <-served)
	// Output:
	// hello, gopher
	// sessions: 1
	// shutdown: <nil>
	// serve: yamux: server closed
}

// A Pool dials an address once and opens every stream to it on the same
// session.
func ExamplePool() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &yamux.SessionServer{Handler: yamux.StreamHandlerFunc(func(st *yamux.Stream) {
		io.Copy(st, st) // echo
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	pool := &yamux.Pool{
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		IdleTimeout: time.Minute,
	}
	defer pool.Close()
	addr := ln.Addr().String()
	for i := range 3 {
		st, err := pool.OpenStream(context.Background(), addr)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Fprintf(st, "call %d", i)
		st.CloseWrite()
		resp, _ := io.ReadAll(st)
		st.Close()
		fmt.Println(string(resp))
	}
	fmt.Println("pool sessions:", pool.NumSessions(), "server sessions:", srv.NumSessions())
	// Output:
	// call 0
	// call 1
	// call 2
	// pool sessions: 1 server sessions: 1
}

// A Router serves several named services on one session; opening a name
// that has no handler fails at once.
func ExampleRouter() {
	router := &yamux.Router{PrefaceTimeout: 5 * time.Second}
	router.HandleFunc("upper", func(st *yamux.Stream) {
		data, _ := io.ReadAll(st)
		st.Write([]byte(strings.ToUpper(string(data))))
	})
	router.HandleFunc("len", func(st *yamux.Stream) {
		n, _ := io.Copy(io.Discard, st)
		fmt.Fprint(st, n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &yamux.SessionServer{Handler: router}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	client, _ := yamux.Client(conn, nil)
	defer client.Close()
	ctx := context.Background()
	for _, name := range []string{"upper", "len"} {
		st, err := client.OpenNamed(ctx, name)
		if err != nil {
			fmt.Println(err)
			return
		}
		st.Write([]byte("named streams"))
		st.CloseWrite()
		resp, _ := io.ReadAll(st)
		st.Close()
		fmt.Printf("%s: %s\n", name, resp)
	}
	_, err = client.OpenNamed(ctx, "reverse")
	fmt.Println(errors.Is(err, yamux.ErrUnknownStreamName), err)
	// Output:
	// upper: NAMED STREAMS
	// len: 13
	// true yamux: unknown stream name: "reverse"
}
