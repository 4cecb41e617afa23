package yamux

// Close returns within closeFlushLimit (50 ms) whatever the peer does. Over
// TLS, linger's CloseWrite is tls.Conn.CloseWrite, which writes a
// close_notify alert under the tls.Conn's write lock with a 5 s deadline of
// its own; tls.Conn.Close does too. closeConn therefore closes the
// connection under the TLS layer first (before, Close took 5 s here).

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

func TestTLSCloseDoesNotWaitForCloseNotify(t *testing.T) {
	{ // real time: a mutex wait inside crypto/tls is not durable blocking for synctest
		c1, c2 := net.Pipe()
		tc, ts := reviewTLSPair(t, c1, c2)
		defer ts.Close()
		cfg := DefaultConfig()
		cfg.EnableKeepAlive = false
		s, err := Client(tc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The peer reads frames until our GoAway, then stops reading (it
		// neither reads nor closes, like a wedged peer).
		sawGoAway := make(chan struct{})
		go func() {
			rd := bufio.NewReaderSize(ts, 16)
			var h [12]byte
			for {
				if _, err := io.ReadFull(rd, h[:]); err != nil {
					return
				}
				if h[1] == byte(typeData) {
					io.CopyN(io.Discard, rd, int64(binary.BigEndian.Uint32(h[8:])))
				}
				if h[1] == byte(typeGoAway) {
					close(sawGoAway)
					return
				}
			}
		}()
		start := time.Now()
		s.Close()
		d := time.Since(start)
		<-sawGoAway
		// Not a timing target: crypto/tls's close_notify wait is 5 s, so
		// one second tells the two apart on any machine.
		if d > time.Second {
			t.Fatalf("Close took %v over TLS; want it bounded by closeFlushLimit (%v), not TLS's 5 s close_notify", d, closeFlushLimit)
		}
	}
}
