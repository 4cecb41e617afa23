package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTable(t *testing.T) {
	in := `goos: linux
BenchmarkBulk/impl=ours/size=32KiB-2  10  1000 ns/op  500 MB/s
BenchmarkBulk/impl=tcp/size=32KiB-2  10  800 ns/op  600 MB/s
BenchmarkBulk/impl=hashicorp/size=32KiB-2  10  2000 ns/op  250 MB/s
BenchmarkBulk/impl=ours/size=32KiB-2  10  1200 ns/op  520 MB/s
BenchmarkBulk/impl=ours/size=32KiB-2  10  1100 ns/op  510 MB/s
PASS
`
	rows, impls, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(impls) != 3 {
		t.Fatalf("impls = %v; want 3", impls)
	}
	if got := median(rows[key{"BenchmarkBulk/size=32KiB", "MB/s"}]["ours"]); got != 510 {
		t.Fatalf("median MB/s = %v; want 510", got)
	}
	var out bytes.Buffer
	print(&out, rows, impls, "ours", "tcp")
	for _, want := range []string{"0.85x", "2.04x", "1.82x"} { // 510/600, 510/250, 2000/1100
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %s:\n%s", want, out.String())
		}
	}
}
