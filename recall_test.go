package yamux

// a Write whose frames are recalled at its deadline after a
// concurrent CloseWrite (or Close) queued the FIN behind them. CloseWrite's
// doc and spec.md §7 say the FIN follows every byte whose window was taken
// (the bytes the Write already queued); with the recall, the peer instead
// gets the FIN without those bytes: a clean io.EOF on a transfer its
// sender saw fail.

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestRecallNeverSendsFINWithoutItsBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRawPeer(t, rawPeerOptions{noRead: true}) // the send loop blocks on the opening ping
		st, err := p.sess.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.SetWriteDeadline(time.Now().Add(time.Second))
		done := writeAsync(st, make([]byte, 100<<10))
		synctest.Wait() // the Write's frame is queued, its window taken
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		r := <-done // at the deadline: the frame is recalled, behind it the FIN stays
		t.Logf("Write = %d, %v", r.n, r.err)
		p.startReader()
		p.expect(rawWindowUpdate, rawSYN, st.StreamID(), 0)
		f := p.expectAny()
		if f.Type == rawData && f.Flags == rawFIN && f.Length == 0 {
			t.Fatalf("the peer got our FIN without the %d bytes queued before it: it reads a clean io.EOF (Write returned %d, %v)", 100<<10, r.n, r.err)
		}
		if !errors.Is(r.err, ErrTimeout) && r.err != nil {
			t.Fatalf("Write: %v", r.err)
		}
	})
}
