package yamux

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// bubblePair makes a client and server session over a net.Pipe created
// inside the current synctest bubble, so that every timer is fake.
func bubblePair(t *testing.T, ccfg, scfg *Config) (*Session, *Session) {
	t.Helper()
	c1, c2 := net.Pipe()
	return sessionsOver(t, c1, c2, ccfg, scfg)
}

func TestReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := bubblePair(t, nil, nil)
		a, _ := streamPair(t, client, server)
		start := time.Now()
		a.SetReadDeadline(start.Add(time.Second))
		_, err := a.Read(make([]byte, 1))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read = %v; want a timeout wrapping os.ErrDeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Read returned after %v; want 1s", d)
		}
		// A past deadline fails at once; clearing it makes Read block again.
		if _, err := a.Read(make([]byte, 1)); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Read with past deadline = %v", err)
		}
	})
}

// TestSetDeadlineDuringBlockedRead: moving the deadline while a Read is
// blocked takes effect for that Read.
func TestSetDeadlineDuringBlockedRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := bubblePair(t, nil, nil)
		a, _ := streamPair(t, client, server)
		start := time.Now()
		a.SetReadDeadline(start.Add(time.Hour))
		done := make(chan error)
		go func() { _, err := a.Read(make([]byte, 1)); done <- err }()
		synctest.Wait()
		a.SetReadDeadline(start.Add(time.Second))
		if err := <-done; !errors.Is(err, ErrTimeout) {
			t.Fatalf("Read = %v; want ErrTimeout", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Read returned after %v; want 1s", d)
		}
	})
}

func TestWriteDeadlineOnExhaustedWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := bubblePair(t, nil, nil)
		a, _ := streamPair(t, client, server)
		a.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := a.Write(make([]byte, 2*initialStreamWindow))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Write = %d, %v; want ErrTimeout", n, err)
		}
		if n != int(initialStreamWindow) {
			t.Fatalf("Write wrote %d before the deadline; want the window, %d", n, initialStreamWindow)
		}
	})
}

// TestKeepAliveDetectsDeadPeer: a peer whose connection still takes bytes
// but which never answers (a hung process) is detected by keepalive, and
// the session closes.
func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		cfg := DefaultConfig()
		cfg.KeepAliveInterval = 10 * time.Second
		cfg.ConnectionWriteTimeout = 5 * time.Second
		client, err := Client(c1, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		go io.Copy(io.Discard, c2) // the "peer" reads everything, answers nothing
		start := time.Now()
		<-client.Done()
		if !errors.Is(client.Err(), ErrKeepAliveTimeout) {
			t.Fatalf("session ended with %v; want ErrKeepAliveTimeout", client.Err())
		}
		if d := time.Since(start); d > cfg.KeepAliveInterval+2*cfg.ConnectionWriteTimeout {
			t.Fatalf("dead peer detected after %v", d)
		}
		c2.Close()
	})
}

func TestKeepAliveKeepsHealthySessionUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.KeepAliveInterval = time.Second
		client, server := bubblePair(t, cfg, cfg)
		time.Sleep(time.Minute) // fake time: sixty keepalive rounds
		if client.IsClosed() || server.IsClosed() {
			t.Fatalf("healthy session closed: %v / %v", client.Err(), server.Err())
		}
		if client.RTT() <= 0 {
			t.Fatal("keepalive measured no RTT")
		}
	})
}

// TestStreamOpenTimeout: a SYN never acknowledged fails that stream only.
func TestStreamOpenTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.StreamOpenTimeout = 3 * time.Second
		client, server := bubblePair(t, cfg, nil)
		st, err := client.OpenStream(context.Background()) // server never accepts
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = st.Read(make([]byte, 1))
		if !errors.Is(err, ErrStreamOpenTimeout) {
			t.Fatalf("Read = %v; want ErrStreamOpenTimeout", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("open timed out after %v; want 3s", d)
		}
		if client.IsClosed() {
			t.Fatal("an open timeout closed the session")
		}
		synctest.Wait()
		if n := client.NumStreams(); n != 0 {
			t.Fatalf("client tracks %d streams after the timeout", n)
		}
		_ = server
	})
}

// TestStreamCloseTimeout: after our Close, a peer that never sends FIN gets
// RST after StreamCloseTimeout and the stream is forgotten on both ends.
func TestStreamCloseTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.StreamCloseTimeout = 30 * time.Second
		client, server := bubblePair(t, cfg, nil)
		a, b := streamPair(t, client, server)
		a.Close()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if client.NumStreams() != 1 {
			t.Fatalf("stream forgotten before the close timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if client.NumStreams() != 0 || server.NumStreams() != 0 {
			t.Fatalf("streams left after close timeout: client %d server %d", client.NumStreams(), server.NumStreams())
		}
		if _, err := b.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("peer Write after close timeout = %v; want ErrStreamReset", err)
		}
	})
}

// TestConnectionDiesMidTransfer: when the connection is cut, a reader gets
// an error, never a clean io.EOF, and every blocked call returns.
func TestConnectionDiesMidTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		client, err := Client(c1, nil)
		if err != nil {
			t.Fatal(err)
		}
		server, err := Server(c2, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		defer server.Close()
		a, b := streamPair(t, client, server)
		if _, err := a.Write([]byte("half a message")); err != nil {
			t.Fatal(err)
		}
		c1.Close() // the network dies under the client
		got, err := io.ReadAll(b)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("ReadAll after the connection died = %q, %v; want an error that is not EOF", got, err)
		}
		if !errors.Is(err, ErrSessionShutdown) {
			t.Fatalf("ReadAll error %v does not wrap ErrSessionShutdown", err)
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, ErrSessionShutdown) {
			t.Fatalf("Write after the connection died = %v", err)
		}
	})
}

// TestCloseReturnsWhilePeerNeverReads: Close is bounded even when the
// connection cannot take the final GoAway.
func TestCloseReturnsWhilePeerNeverReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		client, err := Client(c1, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		client.Close() // c2 is never read: the opening ping cannot even be written
		if d := time.Since(start); d > closeFlushLimit {
			t.Fatalf("Close took %v; want at most %v", d, closeFlushLimit)
		}
		c2.Close()
	})
}

// TestWriteDeadlineWhileQueued: a Write whose frame waits in the send queue
// behind others (the connection is stuck) still returns at its deadline,
// takes its frame back and gives its window back.
func TestWriteDeadlineWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe() // c2 is never read: the send loop's first write blocks
		defer c2.Close()
		client, err := Client(c1, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		for i := 0; i < 2*maxBatchFrames; i++ { // frames queued ahead of ours
			st, err := client.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			go st.Write([]byte("x"))
		}
		synctest.Wait()
		st, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		st.SetWriteDeadline(start.Add(time.Second))
		n, err := st.Write([]byte("late"))
		if !errors.Is(err, ErrTimeout) || n != 0 {
			t.Fatalf("Write = %d, %v; want 0, ErrTimeout", n, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Write returned after %v; want 1s", d)
		}
		if s := st.Stats(); s.SendWindow != initialStreamWindow || s.BytesSent != 0 {
			t.Fatalf("after the timeout: %+v; want the whole window back and nothing counted as sent", s)
		}
	})
}
