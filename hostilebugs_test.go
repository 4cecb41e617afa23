//go:build hostilebugs

package yamux

// Tests that fail against the library as it is: each is the behaviour the
// spec or the doc comments promise, kept out of the default build so that
// CI stays green until the library is fixed. Run them with
//
//	go test -race -tags hostilebugs -run 'Bug' .
//
// When one passes, move it to hostile_test.go or faultconn_test.go.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// TestBugSecondFinIgnored: spec.md §3.3 and §8: "A second FIN (with no data)
// is ignored: some peers send one." admitData rejects every Data frame after
// the peer's FIN, even an empty one, so the session dies with a protocol
// error.
func TestBugSecondFinIgnored(t *testing.T) {
	for _, first := range []uint8{rawData, rawWindowUpdate} {
		synctest.Test(t, func(t *testing.T) {
			p := newRawPeer(t, rawPeerOptions{})
			st := p.openStream()
			p.send(rawCtrl(first, rawFIN, st.StreamID(), 0))
			p.send(rawDataFrame(rawFIN, st.StreamID(), nil))
			if before := p.sync(); len(before) != 0 || p.sess.Err() != nil {
				t.Fatalf("second FIN (first on type %d): session sent %v, Err = %v; want nothing, nil", first, before, p.sess.Err())
			}
			if _, err := st.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("Read = %v; want io.EOF", err)
			}
		})
	}
}

// TestBugRstOnEmptyDataAfterFin: RST carried by an empty Data frame after the
// peer's FIN (rust-yamux sends RST on Data frames) must reset the stream
// (spec.md §3.4), as the same RST on a WindowUpdate does. admitData treats
// it as data after FIN and ends the whole session with a protocol error.
func TestBugRstOnEmptyDataAfterFin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{})
		st := p.openStream()
		p.send(rawDataFrame(rawFIN, st.StreamID(), []byte("all")))
		p.send(rawDataFrame(rawRST, st.StreamID(), nil))
		if before := p.sync(); len(before) != 0 || p.sess.Err() != nil {
			t.Fatalf("session sent %v, Err = %v; want nothing, nil", before, p.sess.Err())
		}
		if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Write after RST = %v; want ErrStreamReset", err)
		}
		// The peer's direction was complete before the RST: it stays readable.
		if got, err := readToError(st); string(got) != "all" || err != io.EOF {
			t.Fatalf("read %q, %v; want \"all\", io.EOF", got, err)
		}
	})
}

// TestBugBlockedCallsWrapCloseCause: ErrSessionShutdown's doc says the error
// returned alongside it also wraps the cause (Session.Err), ErrLocalClose
// after Close. A call blocked in Session.wait returns the send loop's write
// error for its frame instead ("read/write on closed pipe"), which does not
// wrap ErrLocalClose.
func TestBugBlockedCallsWrapCloseCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := hostileConfig()
		p := newRawPeer(t, rawPeerOptions{cfg: cfg, sessionIsClient: true, noRead: true})
		oerr := make(chan error, 1)
		go func() {
			_, err := p.sess.OpenStream(context.Background())
			oerr <- err
		}()
		time.Sleep(time.Second) // the SYN is stuck behind the opening ping
		p.sess.Close()
		checkSessionErr(t, "OpenStream blocked during Close", <-oerr, ErrLocalClose)
	})
}

// TestBugSlowReaderManyStreams: Config.ConnectionWriteTimeout promises to end
// the session only when "a write makes no progress for this long". The send
// loop instead sets one deadline for a whole batch (up to maxBatchBytes,
// 1 MiB): 16 streams writing at once fill a 1 MiB batch, which a peer
// reading 80 KiB/s, steadily, takes 12.8 s to read, and the session dies
// with ErrConnectionWriteTimeout although every read made progress
// (sendloop.go writeConn: SetWriteDeadline(now+ConnectionWriteTimeout) once
// per batch).
func TestBugSlowReaderManyStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server, _, _ := faultPair(t, false, nil, func(c net.Conn) net.Conn {
			return &faultConn{Conn: c, readMax: 4096, readDelay: 50 * time.Millisecond}
		})
		sizes := make([]int, 16)
		for i := range sizes {
			sizes[i] = 128 << 10
		}
		for i, x := range runTransfers(t, client, server, sizes, false, nil) {
			if x.werr != nil || x.rerr != io.EOF || !bytes.Equal(x.got, x.data) {
				t.Errorf("stream %d: write %v, read %d of %d bytes, %v", i, x.werr, len(x.got), len(x.data), x.rerr)
			}
		}
		if err := client.Err(); err != nil {
			t.Fatalf("client session ended: %v", err)
		}
	})
}
