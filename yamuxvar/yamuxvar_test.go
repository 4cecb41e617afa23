package yamuxvar

import (
	"context"
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/d5da5f0f/yamux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var runs int

func TestPublish(t *testing.T) {
	c1, c2 := net.Pipe()
	client, err := yamux.Client(c1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := yamux.Server(c2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	runs++ // -count=N runs this N times; expvar names are process-wide
	name := fmt.Sprintf("yamux_test_client_%d", runs)
	Publish(name, client)

	go func() {
		st, err := server.AcceptStream(context.Background())
		if err == nil {
			io.Copy(io.Discard, st)
			st.Close()
		}
	}()
	st, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Write(make([]byte, 1000))
	st.Close()
	if _, err := client.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}

	var got map[string]any
	if err := json.Unmarshal([]byte(expvar.Get(name).String()), &got); err != nil {
		t.Fatal(err)
	}
	if got["streams_opened"] != 1.0 || got["bytes_sent"].(float64) < 1000 || got["rtt_seconds"].(float64) <= 0 || got["state"] != "open" {
		t.Fatalf("published stats = %v", got)
	}
}
