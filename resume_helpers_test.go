package yamux

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers of the resumption layer's tests: a fault-injecting TCP proxy
// that cuts connections at chosen byte offsets, and a client and server
// pair through it. (pipeListener, for synctest bubbles, is in
// server_test.go.)

// pipeDial is a pipeListener's Dial as a resumable client's dial.
func pipeDial(l *pipeListener) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) { return l.Dial(ctx, "") }
}

// faultProxy forwards TCP connections from its own listener to target,
// and cuts each one (both directions, abruptly) once cutAt(i) bytes have
// gone through it in both directions together, i counting connections
// from 0; cutAt returning 0 means never. cutAll cuts every connection now.
type faultProxy struct {
	ln     net.Listener
	target string
	cutAt  func(i int) int64

	mu    sync.Mutex
	pairs map[*proxyPair]struct{}
	n     int
	wg    sync.WaitGroup
	cuts  atomic.Int32 // connections cut by cutAt
}

type proxyPair struct {
	a, b  net.Conn
	total atomic.Int64
	limit int64
	once  sync.Once
}

func newFaultProxy(t testing.TB, target string, cutAt func(i int) int64) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, cutAt: cutAt, pairs: make(map[*proxyPair]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", p.addr())
}

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		p.mu.Lock()
		var limit int64
		if p.cutAt != nil {
			limit = p.cutAt(p.n)
		}
		p.n++
		pr := &proxyPair{a: a, b: b, limit: limit}
		p.pairs[pr] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.copy(pr, pr.b, pr.a)
		go p.copy(pr, pr.a, pr.b)
	}
}

func (p *faultProxy) copy(pr *proxyPair, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			keep := n
			cut := false
			if pr.limit > 0 {
				total := pr.total.Add(int64(n))
				if total >= pr.limit {
					keep = max(0, n-int(total-pr.limit))
					cut = true
				}
			}
			if keep > 0 {
				if _, werr := dst.Write(buf[:keep]); werr != nil {
					p.cut(pr, false)
					return
				}
			}
			if cut {
				p.cut(pr, true)
				return
			}
		}
		if err != nil {
			p.cut(pr, false)
			return
		}
	}
}

// cut closes both ends of pr with a TCP reset.
func (p *faultProxy) cut(pr *proxyPair, counted bool) {
	pr.once.Do(func() {
		if counted {
			p.cuts.Add(1)
		}
		for _, c := range []net.Conn{pr.a, pr.b} {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		}
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	})
}

// cutAll cuts every connection now.
func (p *faultProxy) cutAll() {
	p.mu.Lock()
	prs := make([]*proxyPair, 0, len(p.pairs))
	for pr := range p.pairs {
		prs = append(prs, pr)
	}
	p.mu.Unlock()
	for _, pr := range prs {
		p.cut(pr, true)
	}
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.cutAll()
	p.wg.Wait()
}

// resumePair starts a ResumeListener on loopback TCP with a SessionServer
// serving handler, and a client session dialed through a faultProxy with
// cutAt. Everything is closed when the test ends.
func resumePair(t testing.TB, handler StreamHandler, cfg *Config, rc *ResumeConfig, cutAt func(int) int64) (*Session, *ResumeListener, *faultProxy) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := NewResumeListener(tl, rc)
	if err != nil {
		t.Fatal(err)
	}
	srv := &SessionServer{Handler: handler, Config: cfg}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(rl)
	}()
	proxy := newFaultProxy(t, tl.Addr().String(), cutAt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := DialResumable(ctx, proxy.dial, cfg, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sess.Close()
		srv.Close()
		<-served
		rl.Close()
	})
	return sess, rl, proxy
}

// resumableOf returns the resumable connection under a session.
func resumableOf(t testing.TB, s *Session) *resumableConn {
	t.Helper()
	switch c := s.Conn().(type) {
	case *resumableConn:
		return c
	case *resumableTLSConn:
		return c.resumableConn
	}
	t.Fatalf("session over %T, not a resumable connection", s.Conn())
	return nil
}

// stateLog records the states a session goes through, from its
// Reconnecting channel; stop returns them.
func stateLog(s *Session) (stop func() []bool) {
	var mu sync.Mutex
	var log []bool
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rec, changed := s.Reconnecting()
			mu.Lock()
			if len(log) == 0 || log[len(log)-1] != rec {
				log = append(log, rec)
			}
			mu.Unlock()
			select {
			case <-changed:
			case <-s.Done():
				return
			case <-quit:
				return
			}
		}
	}()
	return func() []bool {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), log...)
	}
}
