package yamux

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestConformance runs the standard net.Conn conformance suite on stream
// pairs, over each transport.
func TestConformance(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			c1, c2 := tr.pair(t)
			client, err := Client(c1, nil)
			if err != nil {
				return nil, nil, nil, err
			}
			server, err := Server(c2, nil)
			if err != nil {
				client.Close()
				return nil, nil, nil, err
			}
			stop := func() {
				client.Close()
				server.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a, err := client.OpenStream(ctx)
			if err != nil {
				stop()
				return nil, nil, nil, err
			}
			b, err := server.AcceptStream(ctx)
			if err != nil {
				stop()
				return nil, nil, nil, err
			}
			return a, b, stop, nil
		})
	})
}
