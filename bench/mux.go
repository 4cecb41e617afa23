package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// muxer is one stream multiplexer under test. An adapter file per
// implementation (adapter_*.go) provides one.
type muxer interface {
	name() string
	// client and server start the two ends of a session over c.
	client(c net.Conn, o options) (session, error)
	server(c net.Conn, o options) (session, error)
}

// session is one end of a connection under test: a multiplexed session, or
// for raw TCP a dialer (client) or listener (server).
type session interface {
	// open starts a new stream to the other end.
	open(ctx context.Context) (net.Conn, error)
	// accept returns the next stream the other end opened. It returns an
	// error once the session is closed.
	accept() (net.Conn, error)
	// close ends the session; every stream of it fails, and blocked
	// open, accept, Read and Write calls return.
	close() error
}

// options tells an adapter what a scenario needs beyond the defaults.
// Adapters use their implementation's DefaultConfig and change only what a
// scenario could not run without.
type options struct {
	// streams is the most streams open at once. An adapter whose default
	// refuses that many raises its limit (libp2p: MaxIncomingStreams 1000).
	streams int
}

// wrapFunc wraps each end's net.Conn, e.g. in an emulated link; nil means
// plain loopback TCP.
type wrapFunc func(net.Conn) net.Conn

// impl is what a scenario runs against: a muxer over one TCP connection, or
// raw TCP with one connection per stream.
type impl interface {
	name() string
	connect(w wrapFunc, o options) (*endpoints, error)
}

// endpoints are the two ends of one connection under test.
type endpoints struct {
	cli, srv session

	once sync.Once
	err  error
}

// close closes both ends at once (a muxer's Close may wait for its peer)
// and waits for both. Closing a session ends all its streams, so this
// alone tears a rig down. Later calls return the first call's result.
func (e *endpoints) close() error {
	e.once.Do(func() {
		var wg sync.WaitGroup
		var errCli, errSrv error
		wg.Add(2)
		go func() { defer wg.Done(); errCli = e.cli.close() }()
		go func() { defer wg.Done(); errSrv = e.srv.close() }()
		wg.Wait()
		e.err = errors.Join(errCli, errSrv)
	})
	return e.err
}

// Close makes endpoints an io.Closer for the watchdog.
func (e *endpoints) Close() error { return e.close() }

// impls returns every implementation, ours first. The names are the values
// of the impl= key in benchmark names.
func impls() []impl {
	return []impl{
		muxImpl{oursMuxer{}},
		muxImpl{hashicorpMuxer{}},
		muxImpl{libp2pMuxer{}},
		muxImpl{smuxMuxer{}},
		rawTCP{},
	}
}

// muxImpl runs a muxer over a single loopback TCP connection.
type muxImpl struct{ muxer }

func (m muxImpl) connect(w wrapFunc, o options) (*endpoints, error) {
	c, s, err := tcpPair()
	if err != nil {
		return nil, err
	}
	if w != nil {
		c, s = w(c), w(s)
	}
	cli, err := m.client(c, o)
	if err != nil {
		c.Close()
		s.Close()
		return nil, fmt.Errorf("%s client: %w", m.name(), err)
	}
	srv, err := m.server(s, o)
	if err != nil {
		cli.close()
		s.Close()
		return nil, fmt.Errorf("%s server: %w", m.name(), err)
	}
	return &endpoints{cli: cli, srv: srv}, nil
}

// tcpPair returns both ends of one new loopback TCP connection.
func tcpPair() (client, server net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // unblocks Accept
		<-ch
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		return nil, nil, r.err
	}
	return client, r.c, nil
}
