package yamux

import (
	"io"
	"net"
	"testing"
)

// BenchmarkStreamThroughput measures one stream over TCP loopback against
// the same copy on the bare connection; the side-by-side comparison with
// other multiplexers lives in bench/. Kept here for profiling the library
// alone: go test -run '^$' -bench StreamThroughput -cpuprofile cpu.prof
func BenchmarkStreamThroughput(b *testing.B) {
	for _, size := range []int{32 << 10, 1 << 20} {
		b.Run("impl=yamux/size="+sizeName(size), func(b *testing.B) {
			client, server := sessionPair(b, transports[1], nil, nil)
			a, c := streamPair(b, client, server)
			benchCopy(b, a, c, size)
		})
		b.Run("impl=tcp/size="+sizeName(size), func(b *testing.B) {
			c1, c2 := tcpPair(b)
			defer c1.Close()
			defer c2.Close()
			benchCopy(b, c1, c2, size)
		})
	}
}

func benchCopy(b *testing.B, w, r net.Conn, size int) {
	buf := make([]byte, size)
	done := make(chan error, 1)
	total := int64(b.N) * int64(size)
	go func() {
		rb := make([]byte, 64<<10)
		_, err := io.CopyBuffer(io.Discard, io.LimitReader(onlyReader{r}, total), rb)
		done <- err
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// onlyReader hides WriterTo/ReaderFrom so that io.Copy really reads.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func sizeName(n int) string {
	if n >= 1<<20 {
		return itoa(n>>20) + "MiB"
	}
	return itoa(n>>10) + "KiB"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// BenchmarkPingPong64 measures 64-byte round trips on one stream against
// the bare TCP connection.
func BenchmarkPingPong64(b *testing.B) {
	run := func(b *testing.B, a, c net.Conn) {
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(a, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		a.Close()
		c.Close()
	}
	b.Run("impl=yamux", func(b *testing.B) {
		client, server := sessionPair(b, transports[1], nil, nil)
		a, c := streamPair(b, client, server)
		run(b, a, c)
	})
	b.Run("impl=tcp", func(b *testing.B) {
		c1, c2 := tcpPair(b)
		run(b, c1, c2)
	})
}
