package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// group runs functions in goroutines and collects their errors, so that no
// spawned goroutine ever calls t.Fatal.
type group struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (g *group) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.mu.Lock()
			g.errs = append(g.errs, err)
			g.mu.Unlock()
		}
	})
}

// Wait waits for every function and returns their errors joined.
func (g *group) Wait() error {
	g.wg.Wait()
	return errors.Join(g.errs...)
}

// async runs f in a goroutine; the result arrives on the returned channel.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// await returns what ch delivers, or ctx.Err() if ctx ends first.
func await(ctx context.Context, ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up waiting: %w", ctx.Err())
	}
}

// payload returns n deterministic pseudo-random bytes for seed.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	newRand(seed).Read(b)
	return b
}

func newRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// establish opens a stream on opener, accepts it on acceptor, and sends one
// message each way, so that both ends have seen the SYN and the ACK.
func establish(t *testing.T, ctx context.Context, opener, acceptor mux) (o, a stream) {
	t.Helper()
	o, err := opener.Open(ctx)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	a, err = acceptor.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	exchange(t, o, a, "syn")
	exchange(t, a, o, "ack")
	return o, a
}

// exchange writes msg on from and checks that it arrives on to.
func exchange(t *testing.T, from, to stream, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("Write(%q): %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("reading %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("read %q; want %q", got, msg)
	}
}

// sendRandom writes n pseudo-random bytes from seed to w in pieces of
// varying size, then half-closes w. It returns the SHA-256 of what it wrote.
func sendRandom(w stream, n int64, seed uint64) ([sha256.Size]byte, error) {
	rng := newRand(seed)
	sizes := rand.New(rand.NewPCG(seed, 1))
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for n > 0 {
		m := min(n, int64(1+sizes.IntN(len(buf))))
		p := buf[:m]
		rng.Read(p)
		h.Write(p)
		if _, err := w.Write(p); err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("Write with %d bytes left: %w", n, err)
		}
		n -= m
	}
	if err := w.CloseWrite(); err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("CloseWrite: %w", err)
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// receiveAll reads r to io.EOF and returns the byte count and SHA-256.
func receiveAll(r io.Reader) (int64, [sha256.Size]byte, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 64<<10))
	return n, [sha256.Size]byte(h.Sum(nil)), err
}

// transfer sends n bytes from w to r, r's end reading them to EOF, and
// checks length and checksum. It runs the writer in a goroutine and returns
// an error instead of failing, so that it can itself run in one.
func transfer(ctx context.Context, w, r stream, n int64, seed uint64) error {
	type sent struct {
		sum [sha256.Size]byte
		err error
	}
	sentCh := make(chan sent, 1)
	go func() {
		sum, err := sendRandom(w, n, seed)
		sentCh <- sent{sum, err}
	}()
	got, sum, err := receiveAll(r)
	if err != nil {
		return fmt.Errorf("reading after %d of %d bytes: %w", got, n, err)
	}
	var s sent
	select {
	case s = <-sentCh:
	case <-ctx.Done():
		return fmt.Errorf("writer did not finish: %w", ctx.Err())
	}
	if s.err != nil {
		return fmt.Errorf("writer: %w", s.err)
	}
	if got != n || sum != s.sum {
		return fmt.Errorf("received %d bytes with sha256 %x; sent %d with %x", got, sum[:8], n, s.sum[:8])
	}
	return nil
}

// echoUntilEOF copies everything s receives back to it, then closes s.
func echoUntilEOF(s stream) error {
	if _, err := io.Copy(s, s); err != nil {
		s.Close()
		return fmt.Errorf("echo: %w", err)
	}
	return s.Close()
}

// checkEcho compares a received echo with what was sent.
func checkEcho(got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	return fmt.Errorf("echo of %d bytes came back as %d bytes, first difference at offset %d", len(want), len(got), i)
}
