package yamux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

func TestBulkTransfer(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		data := make([]byte, 8<<20)
		rand.Read(data)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Write(data)
			if err == nil {
				err = a.CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("received %d bytes differing from the %d sent", len(got), len(data))
		}
		if !bytes.Equal(got[:16], data[:16]) {
			t.Fatal("prefix differs")
		}
	})
}

func TestOpenAcceptBothDirections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		for _, dir := range []struct {
			name     string
			from, to *Session
			parity   uint32
		}{{"client opens", client, server, 1}, {"server opens", server, client, 0}} {
			a, b := streamPair(t, dir.from, dir.to)
			if a.StreamID() != b.StreamID() || a.StreamID()%2 != dir.parity {
				t.Fatalf("%s: ids %d/%d; want equal with parity %d", dir.name, a.StreamID(), b.StreamID(), dir.parity)
			}
			if _, err := a.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("%s: read %q, %v", dir.name, buf, err)
			}
			a.Close()
			b.Close()
		}
	})
}

func TestManyConcurrentStreams(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		const n = 100
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { // echo server
			for i := 0; i < n; i++ {
				st, err := server.AcceptStream(gctx)
				if err != nil {
					return err
				}
				g.Go(func() error {
					defer st.Close()
					_, err := io.Copy(st, st)
					return err
				})
			}
			return nil
		})
		for i := 0; i < n; i++ {
			g.Go(func() error {
				st, err := client.OpenStream(gctx)
				if err != nil {
					return err
				}
				defer st.Close()
				data := make([]byte, 1000+i*997)
				rand.Read(data)
				werr := make(chan error, 1)
				go func() {
					_, err := st.Write(data)
					if err == nil {
						err = st.CloseWrite()
					}
					werr <- err
				}()
				got, err := io.ReadAll(st)
				if err != nil {
					return fmt.Errorf("stream %d: %w", st.StreamID(), err)
				}
				if err := <-werr; err != nil {
					return err
				}
				if !bytes.Equal(got, data) {
					return fmt.Errorf("stream %d: echo differs (%d vs %d bytes)", st.StreamID(), len(got), len(data))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHalfClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		if _, err := a.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := a.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("Write after CloseWrite = %v; want ErrStreamClosed", err)
		}
		req, err := io.ReadAll(b)
		if err != nil || string(req) != "request" {
			t.Fatalf("server read %q, %v", req, err)
		}
		// The other direction still works after our FIN.
		if _, err := b.Write([]byte("response")); err != nil {
			t.Fatal(err)
		}
		b.Close()
		resp, err := io.ReadAll(a)
		if err != nil || string(resp) != "response" {
			t.Fatalf("client read %q, %v", resp, err)
		}
		a.Close()
		waitFor(t, func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
	})
}

func TestReset(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		readErr := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(b)
			readErr <- err
		}()
		if _, err := a.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		a.Reset()
		if err := <-readErr; !errors.Is(err, ErrStreamReset) {
			t.Fatalf("peer ReadAll after Reset = %v; want ErrStreamReset", err)
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Write after Reset = %v; want ErrStreamReset", err)
		}
		waitFor(t, func() bool { return b.writeFails() })
		if _, err := b.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("peer Write after Reset = %v; want ErrStreamReset", err)
		}
	})
}

// writeFails reports whether the stream is in a state where Write fails.
func (st *Stream) writeFails() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err != nil
}

// waitFor polls cond until it holds, failing the test after 10 s. Used only
// where the state change happens on the peer's goroutines, with no event to
// wait on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSlowReaderWindowRecovery(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		data := make([]byte, 3*int(initialStreamWindow)+12345)
		rand.Read(data)
		werr := make(chan error, 1)
		go func() {
			_, err := a.Write(data)
			if err == nil {
				err = a.CloseWrite()
			}
			werr <- err
		}()
		// The writer exhausts the window and blocks: it cannot finish
		// before the reader reads.
		waitFor(t, func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.out.avail == 0
		})
		select {
		case err := <-werr:
			t.Fatalf("Write returned %v before the reader read anything", err)
		default:
		}
		b.mu.Lock()
		buffered := b.recv.size
		b.mu.Unlock()
		if buffered > int(initialStreamWindow) {
			t.Fatalf("receiver buffered %d bytes; window is %d", buffered, initialStreamWindow)
		}
		// A slow reader in small pieces drains it all.
		var got []byte
		buf := make([]byte, 1000)
		for {
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, want %d", len(got), len(data))
		}
	})
}

func TestConcurrentWritersOneStream(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		const writers, chunk, each = 16, 50000, 8
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := bytes.Repeat([]byte{byte('a' + w)}, chunk)
				for i := 0; i < each; i++ {
					if _, err := a.Write(msg); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		go func() { wg.Wait(); a.CloseWrite(); close(errs) }()
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatal(err)
		}
		for err := range errs {
			t.Fatal(err)
		}
		if len(got) != writers*chunk*each {
			t.Fatalf("got %d bytes; want %d", len(got), writers*chunk*each)
		}
		// Each Write is delivered whole: no interleaving inside a message.
		for off := 0; off < len(got); off += chunk {
			msg := got[off : off+chunk]
			if bytes.Count(msg, msg[:1]) != chunk {
				t.Fatalf("write at offset %d interleaved with another", off)
			}
		}
	})
}

func TestPing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		for _, s := range []*Session{client, server} {
			rtt, err := s.Ping(context.Background())
			if err != nil || rtt <= 0 {
				t.Fatalf("Ping = %v, %v", rtt, err)
			}
		}
	})
}

func TestGoAway(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		if err := server.GoAway(); err != nil {
			t.Fatal(err)
		}
		if _, err := server.OpenStream(context.Background()); !errors.Is(err, ErrLocalGoAway) {
			t.Fatalf("OpenStream after GoAway = %v; want ErrLocalGoAway", err)
		}
		waitFor(t, func() bool {
			client.mu.Lock()
			defer client.mu.Unlock()
			return client.remoteGoAway != nil
		})
		_, err := client.OpenStream(context.Background())
		var ga *GoAwayError
		if !errors.Is(err, ErrRemoteGoAway) || !errors.As(err, &ga) || ga.Code != GoAwayNormal || !ga.Remote {
			t.Fatalf("OpenStream after remote GoAway = %v; want ErrRemoteGoAway with code normal", err)
		}
		// The stream opened before the GoAway still works both ways.
		if _, err := a.Write([]byte("still")); err != nil {
			t.Fatal(err)
		}
		a.CloseWrite()
		if got, err := io.ReadAll(b); err != nil || string(got) != "still" {
			t.Fatalf("read %q, %v after GoAway", got, err)
		}
		if client.IsClosed() || server.IsClosed() {
			t.Fatal("GoAway(normal) closed a session")
		}
	})
}

// TestCloseUnblocksEverything: a session Close returns every blocked call
// with ErrSessionShutdown, on both ends, and leaves no goroutine.
func TestCloseUnblocksEverything(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, _ := streamPair(t, client, server) // a's window is exhausted: Write blocks
		c, d := streamPair(t, client, server) // nothing is sent: Reads block
		results := make(chan error, 5)
		go func() { _, err := a.Write(make([]byte, 4*initialStreamWindow)); results <- err }()
		go func() { _, err := c.Read(make([]byte, 1)); results <- err }()
		go func() { _, err := client.AcceptStream(context.Background()); results <- err }()
		go func() { _, err := d.Read(make([]byte, 1)); results <- err }()
		go func() { _, err := server.AcceptStream(context.Background()); results <- err }()
		waitFor(t, func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.out.avail == 0
		})
		client.Close()
		for i := 0; i < 5; i++ {
			select {
			case err := <-results:
				if !errors.Is(err, ErrSessionShutdown) || err == io.EOF {
					t.Fatalf("blocked call returned %v; want ErrSessionShutdown", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a blocked call did not return after Close")
			}
		}
		select {
		case <-server.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("server session did not end after the client closed")
		}
		if _, err := client.OpenStream(context.Background()); !errors.Is(err, ErrSessionShutdown) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("OpenStream after Close = %v", err)
		}
	})
}

// TestDialContextServesHTTP: DialContext plugs into http.Transport, and a
// Session into http.Serve: many requests, one connection.
func TestDialContextServesHTTP(t *testing.T) {
	client, server := sessionPair(t, transports[1], nil, nil)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(server) }()
	tr := &http.Transport{DialContext: client.DialContext}
	hc := &http.Client{Transport: tr}
	for i := 0; i < 20; i++ {
		resp, err := hc.Get(fmt.Sprintf("http://yamux/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != fmt.Sprintf("hello /%d", i) {
			t.Fatalf("response %d: %q, %v", i, body, err)
		}
	}
	tr.CloseIdleConnections()
	client.Close()
	if conn, err := client.DialContext(context.Background(), "tcp", "x"); conn != nil || !errors.Is(err, ErrSessionShutdown) {
		t.Fatalf("DialContext on a closed session = %v, %v; want a nil net.Conn and ErrSessionShutdown", conn, err)
	}
	srv.Close()
	if err := <-served; !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}
