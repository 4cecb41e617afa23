package yamux

// How Close and CloseWrite end a stream, on the wire and for the peer
// (spec.md §3.3, §3.4, §7): Close returns without waiting for the send
// loop, its FIN follows every byte whose window a Write took, data the
// peer sends after our Close is answered with an RST behind that FIN,
// unread data is credited back so that the peer's Write goes on, and
// CloseWrite on a reset stream reports the reset.
//
// The ordering tests hold the session's send loop in a connection write
// (the raw peer stops reading a net.Pipe, which buffers nothing), so that
// what the session queues meanwhile waits in its queues together and the
// wire shows in which order the send loop takes it. Everything runs in a
// synctest bubble: synctest.Wait, not a sleep, says when the session has
// acted. (A Close that waited on a mutex would hang such a test until
// -timeout rather than fail it at once: synctest does not count mutex
// waits as blocked. One that waits on a channel or sync.Cond fails at
// once.)

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// stallSendLoop holds the session's send loop in the write of a ping (the
// peer stops reading) until p.releaseReads. Call it in a bubble.
func stallSendLoop(t *testing.T, p *rawPeer) {
	t.Helper()
	p.holdReads()
	pings := p.count(rawPing, rawSYN)
	ctx, cancel := context.WithCancel(context.Background())
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		p.sess.Ping(ctx) // the peer never answers: it ends with cancel
	}()
	t.Cleanup(func() { cancel(); <-pinged })
	synctest.Wait()
	if p.count(rawPing, rawSYN) != pings {
		t.Fatal("the peer read the ping; want the send loop held in its write")
	}
}

// goWrite writes b on st in a new goroutine and returns the result's
// channel.
func goWrite(st *Stream, b []byte) <-chan error {
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(b)
		werr <- err
	}()
	return werr
}

// TestPeerDataAfterCloseIsResetBehindFIN: the peer sends data after our
// Close, which nobody will read, while the send loop is held. The session
// answers it with an RST, and on the wire that RST follows the stream's
// data and our FIN, although the receive loop records it while both still
// wait to be written: an RST of ours never overtakes our own FIN, nor bytes
// a Write reports written. Close returns at once wherever the stream's last
// Write is (returned, its frame in the connection write, or its frame
// still queued), and its FIN is always sent.
func TestPeerDataAfterCloseIsResetBehindFIN(t *testing.T) {
	cases := []struct {
		name string
		// write writes "data" on st and leaves the send loop held in a
		// connection write; the Write's result comes on the channel.
		write func(t *testing.T, p *rawPeer, st *Stream) <-chan error
	}{
		{"write_returned", func(t *testing.T, p *rawPeer, st *Stream) <-chan error {
			werr := make(chan error, 1)
			_, err := st.Write([]byte("data"))
			werr <- err
			stallSendLoop(t, p)
			return werr
		}},
		{"frame_being_written", func(t *testing.T, p *rawPeer, st *Stream) <-chan error {
			p.holdReads()
			werr := goWrite(st, []byte("data"))
			synctest.Wait() // the send loop is writing the Write's frame
			if n := p.count(rawData, 0); n != 0 {
				t.Fatalf("the peer read %d data frames; want the send loop held before the Write's", n)
			}
			return werr
		}},
		{"frame_queued", func(t *testing.T, p *rawPeer, st *Stream) <-chan error {
			stallSendLoop(t, p)
			werr := goWrite(st, []byte("data"))
			synctest.Wait() // the Write's frame waits behind the ping
			if n := p.count(rawData, 0); n != 0 {
				t.Fatalf("the peer read %d data frames; want the send loop held before the Write's", n)
			}
			return werr
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newRawPeer(t, rawPeerOptions{})
				st := p.openStream()
				id := st.StreamID()
				werr := c.write(t, p, st)

				closed := make(chan error, 1)
				go func() { closed <- st.Close() }()
				synctest.Wait()
				select {
				case err := <-closed:
					if err != nil {
						t.Fatalf("Close = %v; want nil", err)
					}
				default:
					t.Fatal("Close waits for the send loop; it must only queue the FIN")
				}

				p.send(rawDataFrame(0, id, []byte("late")))
				synctest.Wait() // the receive loop has handled the late data
				p.releaseReads()

				if f := p.expect(rawData, 0, id, 4); string(f.Body) != "data" {
					t.Fatalf("data frame carries %q; want \"data\"", f.Body)
				}
				p.expect(rawData, rawFIN, id, 0)
				p.expect(rawWindowUpdate, rawRST, id, 0)
				if before := p.sync(); len(before) != 0 {
					t.Fatalf("after the RST the session sent %v; want nothing", before)
				}
				if err := <-werr; err != nil {
					t.Fatalf("Write = %v; want nil: its frame was written", err)
				}
			})
		})
	}
}

// TestCloseCreditsUnreadData: our Close drops the data we never read and
// gives its window back (spec.md §3.3), so that the peer's Write, blocked
// on the window that data used up, goes on; what it sends then has no
// reader and is reset. StreamCloseTimeout is off, so nothing else would
// unblock that Write.
func TestCloseCreditsUnreadData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		cfg.StreamCloseTimeout = 0
		client, server := sessionPair(t, transports[0], cfg, cfg)
		a, b := streamPair(t, client, server)
		wrote := writeAsync(a, make([]byte, 4*rawInitialWindow))
		synctest.Wait() // b holds a whole window that nobody reads
		if s := a.Stats(); s.SendWindow != 0 {
			t.Fatalf("writer's send window is %d; want 0 before Close", s.SendWindow)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		select {
		case r := <-wrote:
			// More than the initial window went out: the credit came.
			// At most twice it: the RST came before any further credit.
			if !errors.Is(r.err, ErrStreamReset) || r.n <= rawInitialWindow || r.n > 2*rawInitialWindow {
				t.Fatalf("peer Write = %d, %v; want more than %d and at most %d bytes, and ErrStreamReset", r.n, r.err, rawInitialWindow, 2*rawInitialWindow)
			}
		case <-time.After(time.Hour): // fake time: only a Write that never returns gets here
			a.Reset()
			<-wrote
			t.Fatal("peer Write still blocked after Close dropped the unread data")
		}
	})
}

// TestCloseWriteOnResetStreamReturnsErrStreamReset: after the peer's RST,
// CloseWrite reports the reset (as its doc says) and sends no FIN, and
// Close returns nil.
func TestCloseWriteOnResetStreamReturnsErrStreamReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		p.send(rawCtrl(rawWindowUpdate, rawRST, st.StreamID(), 0))
		p.sync()
		if err := st.CloseWrite(); !errors.Is(err, ErrStreamReset) {
			t.Errorf("CloseWrite on a reset stream = %v; want ErrStreamReset", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close on a reset stream = %v; want nil", err)
		}
		if sent := p.sync(); len(sent) != 0 {
			t.Errorf("the session answered with %v; want nothing on a reset stream", sent)
		}
	})
}
