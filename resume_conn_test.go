package yamux

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// Unit tests of the resumption layer's pieces: the replay buffer as a
// table of operations, and the resumable connection against the net.Conn
// conformance suite.

// TestReplayBuffer: writes, segment lookups and releases over offsets
// that cross chunk boundaries; what segments returns is always the bytes
// written at those offsets, and release frees whole chunks only.
func TestReplayBuffer(t *testing.T) {
	const C = replayChunkSize
	type op struct {
		write   int    // append this many bytes
		release uint64 // then release up to this offset (0: none)
		from    uint64 // then check segments from here
		limit   int
		want    int // bytes segments returns
		chunks  int // chunks held afterwards
		base    uint64
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"small write", []op{{write: 10, from: 0, limit: 100, want: 10, chunks: 1, base: 0}}},
		{"limit cuts", []op{{write: 10, from: 3, limit: 4, want: 4, chunks: 1, base: 0}}},
		{"crosses chunks", []op{{write: 2*C + 5, from: C - 1, limit: C + 2, want: C + 2, chunks: 3, base: 0}}},
		{"release keeps partial chunk", []op{
			{write: C + 10, release: C + 5, from: C + 5, limit: 100, want: 5, chunks: 1, base: C},
		}},
		{"release all frees the last chunk too", []op{
			{write: C + 10, release: C + 10, from: C + 10, limit: 100, want: 0, chunks: 0, base: C + 10},
			{write: 7, from: C + 10, limit: 100, want: 7, chunks: 1, base: C + 10},
		}},
		{"release inside the first chunk frees nothing", []op{
			{write: 3 * C, release: C - 1, from: C - 1, limit: 3 * C, want: 2*C + 1, chunks: 3, base: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b replayBuffer
			defer b.free()
			var all []byte
			for i, o := range tc.ops {
				p := make([]byte, o.write)
				for j := range p {
					p[j] = byte(len(all) + j*7)
				}
				all = append(all, p...)
				b.write(p)
				if o.release > 0 {
					b.release(o.release)
				}
				segs, n := b.segments(o.from, o.limit, nil)
				got := bytes.Join(segs, nil)
				if n != o.want || len(got) != n {
					t.Fatalf("op %d: segments(%d, %d) = %d bytes (%d joined); want %d", i, o.from, o.limit, n, len(got), o.want)
				}
				if !bytes.Equal(got, all[o.from:o.from+uint64(n)]) {
					t.Fatalf("op %d: segments(%d, %d) returned the wrong bytes", i, o.from, o.limit)
				}
				if len(b.chunks) != o.chunks || b.base != o.base || b.end != uint64(len(all)) {
					t.Fatalf("op %d: %d chunks, base %d, end %d; want %d, %d, %d", i, len(b.chunks), b.base, b.end, o.chunks, o.base, len(all))
				}
			}
		})
	}
}

// resumableConnPair returns the two ends of a resumable connection over
// tr's network connections: a client (dialResumableConn) and the
// connection a ResumeListener accepted.
func resumableConnPair(t *testing.T, ln net.Listener, dial func(context.Context) (net.Conn, error)) (c1, c2 net.Conn, stop func()) {
	t.Helper()
	rl, err := NewResumeListener(ln, nil)
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := rl.Accept()
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := dialResumableConn(ctx, dial, &ResumeConfig{})
	if err != nil {
		rl.Close()
		t.Fatal(err)
	}
	srv := <-acc
	if srv == nil {
		t.Fatal("no accepted connection")
	}
	return cli.netConn(), srv, func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			cli.Close()
		}()
		srv.Close()
		<-done
		rl.Close()
	}
}

// TestResumableConnConformance: the resumable connection is a net.Conn
// by the book (golang.org/x/net/nettest: I/O, deadlines in the past,
// present and future, Close unblocking, concurrent methods), over
// loopback TCP and over net.Pipe.
func TestResumableConnConformance(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, nil, nil, err
			}
			c1, c2, stop := resumableConnPair(t, ln, func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", ln.Addr().String())
			})
			return c1, c2, stop, nil
		})
	})
	t.Run("pipe", func(t *testing.T) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			pl := newPipeListener()
			c1, c2, stop := resumableConnPair(t, pl, pipeDial(pl))
			return c1, c2, stop, nil
		})
	})
}

// FuzzResumeRecords: arbitrary bytes from the peer after the handshake,
// as records under a session, then the peer goes away. The session must
// end with an error, never panic or hang, and leave no goroutine.
func FuzzResumeRecords(f *testing.F) {
	data := func(p []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{recData}, uint32(len(p))), p...)
	}
	ack := func(n uint64) []byte { return binary.BigEndian.AppendUint64([]byte{recAck}, n) }
	ping := encodeHeader(typePing, flagSYN, 0, 7)
	for _, seed := range [][]byte{
		nil,
		data(ping[:]),
		append(data(ping[:6]), data(ping[6:])...),
		append(append(data(ping[:]), ack(0)...), recPing, recPong),
		append(data(ping[:]), recClose),
		ack(1 << 40),
		{recData, 0, 0, 0, 0},
		{recData, 0xff, 0xff, 0xff, 0xff},
		{0},
		{9, 9, 9},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// A hang anywhere below crashes with every goroutine's stack, so
		// that the fuzzer reports the input.
		wd := time.AfterFunc(20*time.Second, func() { panic("FuzzResumeRecords: hang") })
		defer wd.Stop()
		c1, c2 := net.Pipe()
		gone := func(context.Context) (net.Conn, error) { return nil, ErrNotResumable }
		c := newResumableConn(true, c1, handshakeResult{}, &ResumeConfig{}, nil, gone)
		sess, err := Client(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, c2)
			close(drained)
		}()
		c2.Write(in)
		c2.Close()
		select {
		case <-sess.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("session still up after the peer went away")
		}
		if sess.Err() == nil {
			t.Fatal("session ended without an error")
		}
		sess.Close()
		<-drained
	})
}
