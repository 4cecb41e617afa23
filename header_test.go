package yamux

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

var headerCases = []struct {
	name    string
	typ     frameType
	flags   flags
	id      uint32
	length  uint32
	golden  string // hex of the encoded header
	wantErr error  // from validate(initialStreamWindow)
}{
	{"data", typeData, 0, 1, 5, "000000000000000100000005", nil},
	{"data SYN", typeData, flagSYN, 3, 0, "000000010000000300000000", nil},
	{"data FIN max window", typeData, flagFIN, 2, initialStreamWindow, "000000040000000200040000", nil},
	{"window update SYN", typeWindowUpdate, flagSYN, 1, 0, "000100010000000100000000", nil},
	{"window update ACK delta", typeWindowUpdate, flagACK, 2, 1 << 20, "000100020000000200100000", nil},
	{"RST", typeWindowUpdate, flagRST, 0x7fffffff, 0, "000100087fffffff00000000", nil},
	{"ping SYN", typePing, flagSYN, 0, 0xdeadbeef, "0002000100000000deadbeef", nil},
	{"ping ACK", typePing, flagACK, 0, 7, "000200020000000000000007", nil},
	{"goaway protocol error", typeGoAway, 0, 0, 1, "000300000000000000000001", nil},
	{"unknown flag bits kept", typeData, 0x8010, 1, 0, "000080100000000100000000", nil},
	{"data too large", typeData, 0, 1, initialStreamWindow + 1, "000000000000000100040001", ErrProtocol},
	{"data 4 GiB", typeData, 0, 1, 0xffffffff, "0000000000000001ffffffff", ErrProtocol},
	{"data on stream 0 (ignored, not invalid)", typeData, 0, 0, 1, "000000000000000000000001", nil},
	{"window update on stream 0 (ignored, not invalid)", typeWindowUpdate, 0, 0, 1, "000100000000000000000001", nil},
	{"SYN on stream 0", typeWindowUpdate, flagSYN, 0, 0, "000100010000000000000000", ErrProtocol},
	{"ping on a stream", typePing, flagSYN, 1, 0, "000200010000000100000000", ErrProtocol},
	{"goaway on a stream", typeGoAway, 0, 3, 0, "000300000000000300000000", ErrProtocol},
	{"unknown type", 4, 0, 0, 0, "000400000000000000000000", ErrInvalidType},
}

func TestHeaderEncodeDecode(t *testing.T) {
	for _, tc := range headerCases {
		t.Run(tc.name, func(t *testing.T) {
			h := encodeHeader(tc.typ, tc.flags, tc.id, tc.length)
			if got := hex.EncodeToString(h[:]); got != tc.golden {
				t.Fatalf("encode(%v, %#x, %d, %d) = %s; want %s", tc.typ, uint16(tc.flags), tc.id, tc.length, got, tc.golden)
			}
			if h.typ() != tc.typ || h.flags() != tc.flags || h.streamID() != tc.id || h.length() != tc.length || h.version() != 0 {
				t.Fatalf("decode(%x) = %v; want type %v flags %#x id %d len %d", h[:], h, tc.typ, uint16(tc.flags), tc.id, tc.length)
			}
			err := h.validate(initialStreamWindow)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("validate(%x) = %v; want nil", h[:], err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("validate(%x) = %v; want %v", h[:], err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("validate(%x) = %v; does not wrap ErrProtocol", h[:], err)
			}
		})
	}
}

func TestHeaderBadVersion(t *testing.T) {
	h := encodeHeader(typeData, 0, 1, 0)
	h[0] = 1
	if err := h.validate(initialStreamWindow); !errors.Is(err, ErrInvalidVersion) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("validate(%x) = %v; want ErrInvalidVersion wrapping ErrProtocol", h[:], err)
	}
}

func TestHeaderAllocs(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts are not meaningful under -race; checked in non-race runs")
		return
	}
	var sink header
	allocs := testing.AllocsPerRun(100, func() {
		h := encodeHeader(typeData, flagSYN, 7, 99)
		if h.validate(initialStreamWindow) != nil || h.length() != 99 {
			panic("bad header")
		}
		sink = h
	})
	_ = sink
	if allocs != 0 {
		t.Fatalf("encode+decode allocates %v times per run; want 0", allocs)
	}
}

func FuzzHeader(f *testing.F) {
	for _, tc := range headerCases {
		b, _ := hex.DecodeString(tc.golden)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerSize {
			return
		}
		var h header
		copy(h[:], b)
		err := h.validate(initialStreamWindow)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("validate(%x) = %v; not a protocol error", h[:], err)
			}
			return
		}
		re := encodeHeader(h.typ(), h.flags(), h.streamID(), h.length())
		if !bytes.Equal(re[:], h[:]) {
			t.Fatalf("encode(decode(%x)) = %x", h[:], re[:])
		}
	})
}

func BenchmarkHeaderEncodeDecode(b *testing.B) {
	b.ReportAllocs()
	var n uint32
	for b.Loop() {
		h := encodeHeader(typeData, 0, 5, 1024)
		if h.validate(initialStreamWindow) == nil {
			n += h.length()
		}
	}
	_ = n
}
