package yamux

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"
)

func TestBulkTransfer(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessionPair(t, tr, nil, nil)
		a, b := streamPair(t, client, server)
		data := make([]byte, 8<<20)
		rand.Read(data)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Write(data)
			if err == nil {
				err = a.CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("received %d bytes differing from the %d sent", len(got), len(data))
		}
		if !bytes.Equal(got[:16], data[:16]) {
			t.Fatal("prefix differs")
		}
	})
}
