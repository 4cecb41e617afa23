package bench

import (
	"context"
	"net"
	"sync"
)

// rawTCP is the baseline: every stream is its own loopback TCP connection
// (Go's defaults: TCP_NODELAY on, kernel-tuned buffers). Its client session
// dials, its server session is the listener; closing either closes every
// connection it made, as a muxer's Close ends its streams.
type rawTCP struct{}

func (rawTCP) name() string { return "tcp" }

func (rawTCP) connect(w wrapFunc, _ options) (*endpoints, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &endpoints{
		cli: &tcpClient{addr: ln.Addr().String(), wrap: w},
		srv: &tcpServer{ln: ln, wrap: w},
	}, nil
}

type tcpClient struct {
	addr  string
	wrap  wrapFunc
	conns connSet
}

func (c *tcpClient) open(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if c.wrap != nil {
		conn = c.wrap(conn)
	}
	return c.conns.track(conn)
}

func (c *tcpClient) accept() (net.Conn, error) {
	return nil, net.ErrClosed // raw TCP: only the server side accepts
}

func (c *tcpClient) close() error { c.conns.closeAll(); return nil }

type tcpServer struct {
	ln    net.Listener
	wrap  wrapFunc
	conns connSet
}

func (s *tcpServer) open(context.Context) (net.Conn, error) {
	return nil, net.ErrClosed // raw TCP: only the client side opens
}

func (s *tcpServer) accept() (net.Conn, error) {
	conn, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.wrap != nil {
		conn = s.wrap(conn)
	}
	return s.conns.track(conn)
}

func (s *tcpServer) close() error {
	err := s.ln.Close()
	s.conns.closeAll()
	return err
}

// connSet holds the open connections of one raw-TCP session.
type connSet struct {
	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func (s *connSet) track(c net.Conn) (net.Conn, error) {
	t := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	if s.conns == nil {
		s.conns = make(map[*trackedConn]struct{})
	}
	s.conns[t] = struct{}{}
	s.mu.Unlock()
	return t, nil
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// trackedConn leaves its set when closed.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}
