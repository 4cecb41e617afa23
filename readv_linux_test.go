package yamux

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// TestConnReaderVectored: over TCP, a read into the caller's buffer also
// takes what follows it (the next frame's header) into the small buffer,
// in the same system call; bytes come out in order either way, and the
// peer's close is io.EOF.
func TestConnReaderVectored(t *testing.T) {
	a, b := tcpPair(t)
	c := newConnReader(b)
	if c.vr == nil {
		t.Fatal("no vectored reader for a *net.TCPConn")
	}
	msg := make([]byte, 1000+headerSize)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	if _, err := a.Write(msg); err != nil { // on loopback, in b's socket buffer when Write returns
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	p := make([]byte, 1000)
	if n, err := c.Read(p); n != len(p) || err != nil || !bytes.Equal(p, msg[:1000]) {
		t.Fatalf("Read = %d, %v (bytes equal: %v); want the first 1000 bytes", n, err, bytes.Equal(p, msg[:n]))
	}
	if got := c.peek(headerSize); !bytes.Equal(got, msg[1000:]) {
		t.Fatalf("after the read, the buffer holds %x; want the %d bytes behind it, read in the same call", got, headerSize)
	}
	c.Discard(headerSize)

	// A longer stream in mixed read sizes, then EOF.
	var want bytes.Buffer
	var chunks [][]byte
	for i := range 200 {
		chunk := bytes.Repeat([]byte{byte(i)}, 100+i*37)
		want.Write(chunk)
		chunks = append(chunks, chunk)
	}
	go func() {
		for _, chunk := range chunks {
			a.Write(chunk)
		}
		a.Close()
	}()
	var got bytes.Buffer
	sizes := []int{headerSize, 300, 4096, 1, 70000}
	for i := 0; ; i++ {
		buf := make([]byte, sizes[i%len(sizes)])
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("read %d bytes that differ from the %d written", got.Len(), want.Len())
	}
}
