package yamux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/d5da5f0f/yamux"
)

// pair returns a connected client and server session over an in-memory
// pipe; real code passes a net.Conn from net.Dial / Listener.Accept.
func pair() (client, server *yamux.Session) {
	c1, c2 := net.Pipe()
	client, _ = yamux.Client(c1, nil)
	server, _ = yamux.Server(c2, nil)
	return client, server
}

// A client opens a stream, sends a request, half-closes, and reads the
// whole response; the server echoes it upper-cased.
func Example() {
	client, server := pair()
	defer client.Close()
	defer server.Close()

	go func() {
		st, err := server.AcceptStream(context.Background())
		if err != nil {
			return
		}
		defer st.Close()
		req, _ := io.ReadAll(st) // until the client's CloseWrite
		st.Write([]byte(fmt.Sprintf("%d bytes: %s", len(req), req)))
	}()

	st, err := client.OpenStream(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	st.Write([]byte("hello"))
	st.CloseWrite() // FIN: the server's ReadAll returns
	resp, err := io.ReadAll(st)
	fmt.Printf("%s (err=%v)\n", resp, err)
	st.Close()
	// Output: 5 bytes: hello (err=<nil>)
}

// Deadlines work as on any net.Conn: a Read that waits past the deadline
// fails with a net.Error whose Timeout() is true.
func ExampleStream_SetReadDeadline() {
	client, server := pair()
	defer client.Close()
	defer server.Close()
	st, _ := client.OpenStream(context.Background())
	defer st.Close()

	st.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := st.Read(make([]byte, 1)) // nothing is ever sent
	var ne net.Error
	fmt.Println(errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout())
	// Output: true true
}

// GoAway stops new streams in both directions while open streams carry on.
func ExampleSession_GoAway() {
	client, server := pair()
	defer client.Close()
	defer server.Close()

	server.GoAway()
	<-client.Draining() // the client has seen it
	_, err := client.OpenStream(context.Background())
	var ga *yamux.GoAwayError
	fmt.Println(errors.Is(err, yamux.ErrRemoteGoAway), errors.As(err, &ga) && ga.Code == yamux.GoAwayNormal)
	fmt.Println(client.State(), server.State())
	// Output:
	// true true
	// draining draining
}

// Ping measures the round trip to the peer.
func ExampleSession_Ping() {
	client, server := pair()
	defer client.Close()
	defer server.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rtt, err := client.Ping(ctx)
	fmt.Println(err == nil && rtt > 0)
	// Output: true
}
