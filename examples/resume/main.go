// Command resume shows a session surviving the loss of its TCP
// connection. A client downloads -mib MiB over one stream of a resumable
// session (yamux.DialResumable on the client, yamux.ResumeListener under a
// yamux.SessionServer on the server), through a TCP proxy in the same
// process that kills the connection -cuts times during the download and
// refuses connections for -outage after each kill. Each time, the session
// goes to StateReconnecting, redials, resumes where it was, and the
// download carries on; the client checks the SHA-256 of what it received
// against the one the server sends at the end. The state changes are
// printed as they happen.
//
//	go run ./examples/resume
//	go run ./examples/resume -mib 256 -cuts 5 -outage 1s
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/d5da5f0f/yamux"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "resume:", err)
		os.Exit(1)
	}
}

// run parses args, starts the server and the proxy, and runs the download.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("resume", flag.ContinueOnError)
	mib := fs.Int("mib", 64, "MiB to download")
	cuts := fs.Int("cuts", 3, "times the proxy kills the TCP connection during the download")
	outage := fs.Duration("outage", 200*time.Millisecond, "how long the proxy refuses connections after each kill")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mib < 1 || *cuts < 0 || *outage < 0 {
		return errors.New("-mib must be positive, -cuts and -outage not negative")
	}
	out := &printer{w: stdout, start: time.Now()}

	// The server: a ResumeListener under a SessionServer.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rl, err := yamux.NewResumeListener(tl, nil)
	if err != nil {
		tl.Close()
		return err
	}
	srv := &yamux.SessionServer{Handler: yamux.StreamHandlerFunc(serveDownload)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(rl) }()
	defer func() {
		srv.Close()
		<-served
		rl.Close()
	}()

	// The proxy between client and server.
	px, err := newProxy(tl.Addr().String())
	if err != nil {
		return err
	}
	defer px.close()
	out.printf("server on %s, proxy on %s", tl.Addr(), px.addr())

	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", px.addr())
	}
	sess, err := yamux.DialResumable(ctx, dial, nil, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	out.printf("session %s", sess.State())
	watched := watchState(sess, out)
	defer watched()

	if err := download(ctx, sess, int64(*mib)<<20, *cuts, *outage, px, out); err != nil {
		return err
	}
	for s := range srv.Sessions() {
		if rs, ok := s.ResumeStats(); ok {
			out.printf("server: %d reconnections, %d bytes replayed; listener %+v", rs.Reconnects, rs.ReplayedBytes, rl.Stats())
		}
	}
	return nil
}

// serveDownload answers a stream's 8-byte request, a size n, with n bytes
// of deterministic data and then their SHA-256.
func serveDownload(st *yamux.Stream) {
	var req [8]byte
	if _, err := io.ReadFull(st, req[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(req[:]))
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{'y', 'a', 'm', 'u', 'x'}), n), h)
	if _, err := io.Copy(st, src); err != nil {
		return
	}
	st.Write(h.Sum(nil))
	st.CloseWrite()
}

// download fetches n bytes, killing the connection in the proxy cuts
// times, evenly spread, and checks the SHA-256.
func download(ctx context.Context, sess *yamux.Session, n int64, cuts int, outage time.Duration, px *proxy, out *printer) error {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if _, err := st.Write(binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
		return err
	}
	out.printf("downloading %d MiB", n>>20)
	start := time.Now()
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var got int64
	next := 1
	for got < n {
		k, err := st.Read(buf[:min(int64(len(buf)), n-got)])
		h.Write(buf[:k])
		got += int64(k)
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", got, err)
		}
		if next <= cuts && got >= n*int64(next)/int64(cuts+1) {
			out.printf("%d%% received: killing the TCP connection (the proxy refuses new ones for %v)", got*100/n, outage)
			px.kill(outage)
			next++
		}
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(st, want); err != nil {
		return fmt.Errorf("reading the checksum: %w", err)
	}
	if string(h.Sum(nil)) != string(want) {
		return errors.New("download corrupted: SHA-256 mismatch")
	}
	d := time.Since(start)
	rs, _ := sess.ResumeStats()
	out.printf("download complete: %d bytes in %v (%.0f MB/s), sha256 ok, %d reconnections, %d bytes replayed by the client",
		n, d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6, rs.Reconnects, rs.ReplayedBytes)
	return nil
}

// watchState prints the session's state at every change, until the
// returned function is called or the session ends.
func watchState(sess *yamux.Session, out *printer) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, changed := sess.Reconnecting()
			select {
			case <-changed:
				rs, _ := sess.ResumeStats()
				out.printf("state: %s (reconnections so far: %d)", sess.State(), rs.Reconnects)
			case <-sess.Done():
				out.printf("state: %s (%v)", sess.State(), sess.Err())
				return
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// printer prints lines with the time since start, from several goroutines.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%7.3fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// proxy forwards TCP connections to a target; kill resets the current
// ones and refuses new ones for a while, as a network outage would.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	downTo time.Time
	wg     sync.WaitGroup
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := time.Now().Before(p.downTo)
		p.mu.Unlock()
		if down {
			a.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		p.mu.Lock()
		p.conns[a], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(a, b)
		go p.pipe(b, a)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// kill resets every connection and refuses new ones for outage.
func (p *proxy) kill(outage time.Duration) {
	p.mu.Lock()
	p.downTo = time.Now().Add(outage)
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.(*net.TCPConn).SetLinger(0) // a reset, not a FIN
		c.Close()
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.kill(0)
	p.wg.Wait()
}
