package yamux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// routerRig serves a Router with "echo" and "upper" through a
// SessionServer over a pipeListener, and returns a client session to it.
// Call it inside a synctest bubble.
func routerRig(t *testing.T, prefaceTimeout time.Duration) (*Session, *SessionServer) {
	t.Helper()
	r := &Router{PrefaceTimeout: prefaceTimeout}
	r.Handle("echo", echoHandler)
	r.HandleFunc("upper", func(st *Stream) {
		data, _ := io.ReadAll(st)
		st.Write(bytes.ToUpper(data))
	})
	ln := newPipeListener()
	srv := &SessionServer{Handler: r}
	startServer(t, srv, ln)
	c := dialClient(t, func() (net.Conn, error) { return ln.Dial(context.Background(), "") })
	return c, srv
}

func TestRouterDispatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := routerRig(t, 0)
		ctx := context.Background()
		for _, tc := range []struct{ name, send, want string }{
			{"echo", "Hello", "Hello"},
			{"upper", "Hello", "HELLO"},
			{"echo", "", ""},
		} {
			st, err := c.OpenNamed(ctx, tc.name)
			if err != nil {
				t.Fatalf("OpenNamed(%q): %v", tc.name, err)
			}
			if got := roundTrip(t, st, tc.send); got != tc.want {
				t.Fatalf("%s(%q) = %q; want %q", tc.name, tc.send, got, tc.want)
			}
		}
	})
}

func TestRouterUnknownName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := routerRig(t, 0)
		ctx := context.Background()
		if _, err := c.OpenNamed(ctx, "nope"); !errors.Is(err, ErrUnknownStreamName) {
			t.Fatalf("OpenNamed(unknown) = %v; want ErrUnknownStreamName", err)
		}
		synctest.Wait()
		if n := c.NumStreams(); n != 0 {
			t.Fatalf("%d streams left after a refused open", n)
		}

		// What a raw opener sees: status 1, end of stream, and a reset.
		st, err := c.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("\x04nope"))
		got, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(got, []byte{prefaceUnknown}) {
			t.Fatalf("raw opener read %q, %v; want status 1 then EOF", got, err)
		}
		synctest.Wait()
		if _, err := st.Write([]byte("more")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("Write after refusal = %v; want ErrStreamReset", err)
		}

		// A zero-length name is answered as malformed.
		st, err = c.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte{0})
		if got, _ := io.ReadAll(st); !bytes.Equal(got, []byte{prefaceMalformed}) {
			t.Fatalf("raw opener of an empty name read %q; want status 2", got)
		}
	})
}

func TestRouterInvalidName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := routerRig(t, 0)
		for _, name := range []string{"", strings.Repeat("x", 256)} {
			if _, err := c.OpenNamed(context.Background(), name); !errors.Is(err, ErrInvalidStreamName) {
				t.Fatalf("OpenNamed(%d bytes) = %v; want ErrInvalidStreamName", len(name), err)
			}
		}
		if n := c.Stats().StreamsOpened; n != 0 {
			t.Fatalf("%d streams opened for invalid names", n)
		}
		// 255 bytes is the longest valid name; unknown here.
		if _, err := c.OpenNamed(context.Background(), strings.Repeat("x", 255)); !errors.Is(err, ErrUnknownStreamName) {
			t.Fatalf("OpenNamed(255 bytes) = %v; want ErrUnknownStreamName", err)
		}
	})
}

// TestRouterSilentOpener: an opener that sends no preface, or only part of
// it, is reset after PrefaceTimeout.
func TestRouterSilentOpener(t *testing.T) {
	for name, preface := range map[string][]byte{
		"silent":       nil,
		"length only":  {5},
		"partial name": []byte("\x05ech"),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, _ := routerRig(t, 2*time.Second)
				st, err := c.OpenStream(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(preface) > 0 {
					st.Write(preface)
				}
				start := time.Now()
				if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
					t.Fatalf("Read = %v; want ErrStreamReset", err)
				}
				if d := time.Since(start); d != 2*time.Second {
					t.Fatalf("reset after %v; want 2s", d)
				}
			})
		})
	}
}

// TestOpenNamedPeerMisbehaves: the answer is bounded by ctx, and anything
// but a defined status is an error.
func TestOpenNamedPeerMisbehaves(t *testing.T) {
	for name, tc := range map[string]struct {
		peer func(st *Stream)
		want error
	}{
		"silent":           {func(*Stream) {}, context.DeadlineExceeded},
		"undefined status": {func(st *Stream) { st.Write([]byte{7}) }, ErrBadStreamPreface},
		"malformed status": {func(st *Stream) { st.Write([]byte{prefaceMalformed}) }, ErrBadStreamPreface},
		"closes": {func(st *Stream) {
			io.ReadFull(st, make([]byte, 4)) // the preface, so that Close sends no RST
			st.Close()
		}, ErrBadStreamPreface},
		"resets": {func(st *Stream) { st.Reset() }, ErrStreamReset},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server := bubblePair(t, nil, nil)
				go func() {
					st, err := server.AcceptStream(context.Background())
					if err == nil {
						tc.peer(st)
					}
				}()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				start := time.Now()
				_, err := client.OpenNamed(ctx, "svc")
				if !errors.Is(err, tc.want) {
					t.Fatalf("OpenNamed = %v; want %v", err, tc.want)
				}
				if tc.want == context.DeadlineExceeded && time.Since(start) != time.Second {
					t.Fatalf("OpenNamed gave up after %v; want 1s", time.Since(start))
				}
				synctest.Wait()
				if n := client.NumStreams(); n != 0 {
					t.Fatalf("%d streams left after a failed OpenNamed", n)
				}
			})
		})
	}
}

func TestPoolOpenNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &Router{}
		r.HandleFunc("upper", func(st *Stream) {
			data, _ := io.ReadAll(st)
			st.Write(bytes.ToUpper(data))
		})
		ln := newPipeListener()
		startServer(t, &SessionServer{Handler: r}, ln)
		p := &Pool{Dial: ln.Dial}
		defer p.Close()
		st, err := p.OpenNamed(context.Background(), "addr", "upper")
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, st, "pooled"); got != "POOLED" {
			t.Fatalf("upper = %q", got)
		}
		if _, err := p.OpenNamed(context.Background(), "addr", "lower"); !errors.Is(err, ErrUnknownStreamName) {
			t.Fatalf("OpenNamed(unknown) = %v; want ErrUnknownStreamName", err)
		}
		if _, err := p.OpenNamed(context.Background(), "addr", ""); !errors.Is(err, ErrInvalidStreamName) {
			t.Fatalf("OpenNamed(\"\") = %v; want ErrInvalidStreamName", err)
		}
	})
}

func TestRouterHandlePanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	var r Router
	r.Handle("a", echoHandler)
	mustPanic("duplicate", func() { r.Handle("a", echoHandler) })
	mustPanic("empty", func() { r.Handle("", echoHandler) })
	mustPanic("too long", func() { r.Handle(strings.Repeat("x", 256), echoHandler) })
	mustPanic("nil handler", func() { r.Handle("b", nil) })
	mustPanic("nil func", func() { r.HandleFunc("b", nil) })
}
