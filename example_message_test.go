package yamux_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/d5da5f0f/yamux"
)

// A Router receives messages on named channels; the other end sends them
// with SendAck, which returns once the handler has returned, so the
// messages are handled in order. An unknown channel fails at once.
func ExampleRouter_HandleMessage() {
	client, server := pair()
	defer client.Close()
	defer server.Close()

	r := &yamux.Router{MaxMessageSize: 64 << 10}
	r.HandleMessage("", func(m yamux.Message) { // the default channel
		fmt.Printf("default: %s\n", m.Data)
	})
	r.HandleMessage("log", func(m yamux.Message) {
		fmt.Printf("log: %s\n", m.Data)
	})
	go func() { // what a SessionServer with Handler: r does
		for {
			st, err := server.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				r.ServeStream(st)
				st.Close()
			}()
		}
	}()

	ctx := context.Background()
	client.SendAck(ctx, "log", []byte("first"))
	client.SendAck(ctx, "log", []byte("second"))
	client.SendAck(ctx, "", []byte("third"))
	err := client.SendAck(ctx, "metrics", []byte("lost"))
	fmt.Println(errors.Is(err, yamux.ErrUnknownChannel))
	err = client.SendAck(ctx, "log", make([]byte, 100<<10))
	fmt.Println(errors.Is(err, yamux.ErrMessageTooLarge), r.Stats().MessagesTooLarge)
	// Output:
	// log: first
	// log: second
	// default: third
	// true
	// true 1
}
