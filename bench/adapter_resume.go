package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	yamux "github.com/d5da5f0f/yamux"
)

// resumeImpl is this module's yamux over its resumption layer
// (yamux.DialResumable and yamux.ResumeListener, default ResumeConfig)
// on one loopback TCP connection: what the layer costs on the happy path,
// where nothing is ever lost. It is not in impls(): only
// BenchmarkResumeCost runs it, beside impl=ours, in the same run.
type resumeImpl struct{}

func (resumeImpl) name() string { return "ours-resume" }

func (resumeImpl) connect(w wrapFunc, o options) (*endpoints, error) {
	if w != nil {
		return nil, errors.New("ours-resume: wrapped links are not supported")
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rl, err := yamux.NewResumeListener(tl, nil)
	if err != nil {
		tl.Close()
		return nil, err
	}
	type accepted struct {
		s   *yamux.Session
		err error
	}
	ch := make(chan accepted, 1)
	cfg := oursMuxer{}.config(o)
	go func() {
		c, err := rl.Accept()
		if err != nil {
			ch <- accepted{nil, err}
			return
		}
		s, err := yamux.Server(c, cfg)
		if err != nil {
			c.Close()
		}
		ch <- accepted{s, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := yamux.DialResumable(ctx, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", tl.Addr().String())
	}, cfg, nil)
	if err != nil {
		rl.Close()
		<-ch
		return nil, fmt.Errorf("ours-resume client: %w", err)
	}
	a := <-ch
	if a.err != nil {
		cli.Close()
		rl.Close()
		return nil, fmt.Errorf("ours-resume server: %w", a.err)
	}
	return &endpoints{cli: oursSession{cli}, srv: resumeServerSession{oursSession{a.s}, rl}}, nil
}

// resumeServerSession also closes the listener.
type resumeServerSession struct {
	oursSession
	rl *yamux.ResumeListener
}

func (s resumeServerSession) close() error {
	err := s.oursSession.close()
	return errors.Join(err, s.rl.Close())
}
