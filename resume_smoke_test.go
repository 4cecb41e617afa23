package yamux

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func TestResumeSmoke(t *testing.T) {
	sess, rl, proxy := resumePair(t, echoHandler, nil, &ResumeConfig{MinBackoff: time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("hello "), 1000)
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatal(err)
	}
	proxy.cutAll()
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("mismatch")
	}
	rs, _ := sess.ResumeStats()
	t.Logf("client %+v server %+v", rs, rl.Stats())
}
