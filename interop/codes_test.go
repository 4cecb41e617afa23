package interop

import (
	"context"
	"errors"
	"math"
	"testing"

	libp2p "github.com/libp2p/go-yamux/v5"

	"github.com/d5da5f0f/yamux"
)

// Error codes in RST and GoAway frames (spec.md §3.4, §6), between us and
// libp2p/go-yamux both ways, and what hashicorp/yamux, which knows no
// codes, makes of ours.

// TestResetCodeFromPeer: libp2p/go-yamux's ResetWithError reaches our
// Read and Write as a *yamux.StreamError with its code, the largest code
// included; our session stays up.
func TestResetCodeFromPeer(t *testing.T) {
	runPairings(t, pairingsOf(libp2pImpl), options{}, func(t *testing.T, ctx context.Context, p *pair) {
		for _, code := range []uint32{0x1004, math.MaxUint32} {
			o, a := establish(t, ctx, p.a, p.b)
			read := async(func() error {
				_, err := o.Read(make([]byte, 1))
				return err
			})
			if err := a.(*libp2p.Stream).ResetWithError(code); err != nil {
				t.Fatalf("ResetWithError: %v", err)
			}
			want := &yamux.StreamError{Code: code, Remote: true}
			if err := await(ctx, read); !errors.Is(err, want) || !errors.Is(err, yamux.ErrStreamReset) {
				t.Fatalf("our Read after ResetWithError(%#x) = %v; want %v, matching ErrStreamReset", code, err, want)
			}
			if _, err := o.Write([]byte("x")); !errors.Is(err, want) {
				t.Fatalf("our Write after ResetWithError(%#x) = %v; want %v", code, err, want)
			}
		}
		if _, err := p.a.Ping(ctx); err != nil {
			t.Fatalf("our session after coded resets: Ping = %v (session error %v)", err, p.ours.Err())
		}
	})
}

// TestResetCodeFromUs: our ResetWithCode reaches libp2p/go-yamux as its
// *StreamError with the code; hashicorp/yamux sees a plain reset (it reads
// no codes) and its session stays up.
func TestResetCodeFromUs(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, a := establish(t, ctx, p.a, p.b)
		read := async(func() error {
			_, err := a.Read(make([]byte, 1))
			return err
		})
		if err := o.(*yamux.Stream).ResetWithCode(0x1004); err != nil {
			t.Fatalf("ResetWithCode: %v", err)
		}
		err := await(ctx, read)
		var want error = p.peer.errReset
		if p.peer == libp2pImpl {
			want = &libp2p.StreamError{ErrorCode: 0x1004, Remote: true}
		}
		if !errors.Is(err, want) {
			t.Fatalf("%s Read after our ResetWithCode(0x1004) = %v; want %v", p.peer.name, err, want)
		}
		if _, err := o.Read(make([]byte, 1)); !errors.Is(err, &yamux.StreamError{Code: 0x1004}) {
			t.Fatalf("our Read after our ResetWithCode = %v; want our own *StreamError", err)
		}
		if _, err := p.b.Ping(ctx); err != nil {
			t.Fatalf("%s session after our coded reset: Ping = %v", p.peer.name, err)
		}
	})
}

// TestGoAwayCodeFromUs: CloseWithCode's GoAway reaches libp2p/go-yamux as
// its *GoAwayError with the code, on a blocked Read and on OpenStream.
// hashicorp/yamux, which knows only codes 0..2, ends its session too.
func TestGoAwayCodeFromUs(t *testing.T) {
	forEachPairing(t, options{}, func(t *testing.T, ctx context.Context, p *pair) {
		_, a := establish(t, ctx, p.a, p.b)
		read := async(func() error {
			_, err := a.Read(make([]byte, 1))
			return err
		})
		if err := p.ours.CloseWithCode(0x1006); err != nil {
			t.Fatalf("CloseWithCode: %v", err)
		}
		err := await(ctx, read)
		switch p.peer {
		case libp2pImpl:
			want := &libp2p.GoAwayError{ErrorCode: 0x1006, Remote: true}
			if !errors.Is(err, want) {
				t.Fatalf("libp2p Read after our CloseWithCode(0x1006) = %v; want %v", err, want)
			}
			if _, err := p.b.Open(ctx); !errors.Is(err, want) {
				t.Fatalf("libp2p OpenStream after our CloseWithCode(0x1006) = %v; want %v", err, want)
			}
		case hashicorpImpl:
			if err == nil {
				t.Fatal("hashicorp Read after our CloseWithCode = nil; want the session's end")
			}
			s := p.b.(hashicorpMux).s
			select {
			case <-s.CloseChan():
			case <-ctx.Done():
				t.Fatal("hashicorp session still up after our CloseWithCode")
			}
		}
		if err := p.ours.Err(); !errors.Is(err, yamux.ErrLocalClose) || !errors.Is(err, &yamux.GoAwayError{Code: 0x1006}) {
			t.Fatalf("our Err() = %v; want ErrLocalClose and our GoAway(0x1006)", err)
		}
	})
}

// TestGoAwayCodeFromPeer: libp2p/go-yamux's CloseWithError ends our
// session with a *yamux.GoAwayError carrying the code, seen by Err, a
// blocked Read and OpenStream.
func TestGoAwayCodeFromPeer(t *testing.T) {
	runPairings(t, pairingsOf(libp2pImpl), options{}, func(t *testing.T, ctx context.Context, p *pair) {
		o, _ := establish(t, ctx, p.a, p.b)
		read := async(func() error {
			_, err := o.Read(make([]byte, 1))
			return err
		})
		if err := p.b.(libp2pMux).s.CloseWithError(0x1006); err != nil {
			t.Fatalf("CloseWithError: %v", err)
		}
		want := &yamux.GoAwayError{Code: 0x1006, Remote: true}
		if err := await(ctx, read); !errors.Is(err, want) || !errors.Is(err, yamux.ErrSessionShutdown) {
			t.Fatalf("our Read after the peer's CloseWithError(0x1006) = %v; want ErrSessionShutdown with %v", err, want)
		}
		select {
		case <-p.ours.Done():
		case <-ctx.Done():
			t.Fatal("our session still up after the peer's CloseWithError")
		}
		var ga *yamux.GoAwayError
		if err := p.ours.Err(); !errors.As(err, &ga) || *ga != *want {
			t.Fatalf("our Err() = %v; want %v", err, want)
		}
		if _, err := p.a.Open(ctx); !errors.Is(err, want) {
			t.Fatalf("our OpenStream after the peer's CloseWithError = %v; want %v", err, want)
		}
	})
}
