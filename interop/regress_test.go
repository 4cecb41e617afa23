// Regressions: each test here once failed against the library and shows
// an interop bug that is now fixed (concurrent pings from hashicorp/yamux
// lost their answers; libp2p's RST error code was read as window credit).

package interop

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/d5da5f0f/yamux"
	libp2p "github.com/libp2p/go-yamux/v5"
)

// TestBugConcurrentPeerPings: a peer with several pings outstanding gets an
// answer to each. hashicorp/yamux answers every ping, and its Ping waits
// for the answer to its own opaque value, so two concurrent Pings (or a
// user Ping racing its 30 s keepalive) are normal. Our handlePing keeps
// only the newest unanswered ping in one slot (Session.pingAck), so pings
// that arrive together lose all answers but the last; hashicorp's Ping then
// times out, and when the lost one was its keepalive it closes the session
// with ErrKeepAliveTimeout. (libp2p coalesces its pings into one, so it
// passes.)
func TestBugConcurrentPeerPings(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var g group
		for i := range 8 {
			g.Go(func() error {
				if _, err := p.b.Ping(ctx); err != nil {
					return fmt.Errorf("%s Ping %d: %w", p.peer.name, i, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBugResetWithErrorCode: libp2p/go-yamux v5 carries an error code in
// the length field of its RST WindowUpdate (Stream.ResetWithError). Our
// Stream.addSendWindow treats that field as a window delta and checks it
// for overflow before it looks at the RST flag, so a large code (here
// 0xFFFFFFFF) ends our whole session with a protocol error and
// GoAway(protocol error) instead of resetting one stream.
func TestBugResetWithErrorCode(t *testing.T) {
	runPairings(t, pairingsOf(libp2pImpl), options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		if err := a.(*libp2p.Stream).ResetWithError(math.MaxUint32); err != nil {
			t.Fatalf("ResetWithError: %v", err)
		}
		if _, err := o.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrStreamReset) {
			t.Fatalf("our Read after ResetWithError = %v; want ErrStreamReset", err)
		}
		if _, err := p.a.Ping(ctx); err != nil {
			t.Fatalf("our session after a peer's RST with an error code: Ping = %v (session error %v)", err, p.ours.Err())
		}
	})
}
