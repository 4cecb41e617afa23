package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	hyamux "github.com/hashicorp/yamux"
)

// transport is what the benchmark runs gRPC over: a listener for the
// server and a dialer for the client, and how to tear both down.
type transport struct {
	name  string
	setup func() (ln net.Listener, dial func(context.Context, string) (net.Conn, error), closeAll func(), err error)
}

var transports = []transport{
	{"yamux (this library)", setupOurs},
	{"hashicorp/yamux", setupHashicorp},
	{"plain TCP", setupTCP},
}

// benchResult is one transport's measurement.
type benchResult struct {
	calls   int
	elapsed time.Duration
	p50     time.Duration
	p99     time.Duration
}

// runBench measures unary Echo calls with c in flight over each transport
// for d, one transport after the other in this process, and prints a
// table.
func runBench(ctx context.Context, stdout io.Writer, c int, d time.Duration) error {
	fmt.Fprintf(stdout, "gRPC unary Echo, 64-byte messages, %d calls in flight, %v per transport, one TCP connection each\n", c, d)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tcalls/s\tp50\tp99\t")
	for _, tr := range transports {
		res, err := benchOne(ctx, tr, c, d)
		if err != nil {
			return fmt.Errorf("%s: %w", tr.name, err)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t\n", tr.name, float64(res.calls)/res.elapsed.Seconds(),
			res.p50.Round(time.Microsecond), res.p99.Round(time.Microsecond))
	}
	return tw.Flush()
}

// benchOne serves gRPC over tr and makes unary calls from c goroutines for
// d (after a short warm-up), recording each call's latency.
func benchOne(ctx context.Context, tr transport, c int, d time.Duration) (benchResult, error) {
	ln, dial, closeAll, err := tr.setup()
	if err != nil {
		return benchResult{}, err
	}
	srv := newServer()
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	defer func() {
		srv.Stop() // closes ln
		closeAll()
		wg.Wait()
	}()
	conn, err := dialGRPC(dial)
	if err != nil {
		return benchResult{}, err
	}
	defer conn.Close()

	call := func() error {
		req := make([]byte, 64)
		var resp []byte
		if err := conn.Invoke(ctx, echoMethod, &req, &resp); err != nil {
			return err
		}
		if len(resp) != len(req) {
			return fmt.Errorf("reply of %d bytes; want %d", len(resp), len(req))
		}
		return nil
	}
	if _, err := measure(ctx, call, c, min(d/10, 200*time.Millisecond)); err != nil { // warm-up
		return benchResult{}, err
	}
	return measure(ctx, call, c, d)
}

// measure runs call from c goroutines until d has passed or one fails.
func measure(ctx context.Context, call func() error, c int, d time.Duration) (benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lat := make([][]time.Duration, c)
	errs := make([]error, c)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := call(); err != nil {
					if ctx.Err() == nil {
						errs[w] = err
						cancel()
					}
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return benchResult{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return benchResult{}, errors.New("no call completed")
	}
	slices.Sort(all)
	return benchResult{
		calls:   len(all),
		elapsed: elapsed,
		p50:     all[len(all)/2],
		p99:     all[len(all)*99/100],
	}, nil
}

func setupOurs() (net.Listener, func(context.Context, string) (net.Conn, error), func(), error) {
	client, server, err := sessionPair()
	if err != nil {
		return nil, nil, nil, err
	}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		return client.DialContext(ctx, "yamux", "")
	}
	return server, dial, func() { client.Close(); server.Close() }, nil
}

func setupHashicorp() (net.Listener, func(context.Context, string) (net.Conn, error), func(), error) {
	c, s, err := tcpPair()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := hyamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	server, err := hyamux.Server(s, cfg)
	if err != nil {
		c.Close()
		s.Close()
		return nil, nil, nil, err
	}
	client, err := hyamux.Client(c, cfg)
	if err != nil {
		c.Close()
		server.Close()
		return nil, nil, nil, err
	}
	dial := func(context.Context, string) (net.Conn, error) {
		st, err := client.OpenStream()
		if err != nil {
			return nil, err // not st: a nil *Stream is no nil net.Conn
		}
		return st, nil
	}
	return server, dial, func() { client.Close(); server.Close() }, nil
}

func setupTCP() (net.Listener, func(context.Context, string) (net.Conn, error), func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	addr := ln.Addr().String()
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return ln, dial, func() { ln.Close() }, nil
}
