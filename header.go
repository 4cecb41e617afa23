package yamux

import (
	"encoding/binary"
	"fmt"
)

// Wire constants of the yamux protocol (spec.md §2).
const (
	protoVersion uint8 = 0
	headerSize         = 12

	// initialStreamWindow is the receive window every stream starts with,
	// granted implicitly by both ends (spec.md §4).
	initialStreamWindow uint32 = 256 << 10
)

// frameType is the second byte of a header.
type frameType uint8

const (
	typeData         frameType = 0
	typeWindowUpdate frameType = 1
	typePing         frameType = 2
	typeGoAway       frameType = 3
	numFrameTypes              = 4
)

func (t frameType) String() string {
	switch t {
	case typeData:
		return "Data"
	case typeWindowUpdate:
		return "WindowUpdate"
	case typePing:
		return "Ping"
	case typeGoAway:
		return "GoAway"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// flags is the 16-bit flag field of a header.
type flags uint16

const (
	flagSYN flags = 1 << 0
	flagACK flags = 1 << 1
	flagFIN flags = 1 << 2
	flagRST flags = 1 << 3

	// knownFlags are the bits the protocol defines; others are ignored
	// on receipt (spec.md §2.3) and never sent.
	knownFlags = flagSYN | flagACK | flagFIN | flagRST
)

// header is one encoded 12-byte frame header:
// version(1) type(1) flags(2) streamID(4) length(4), big-endian.
type header [headerSize]byte

func encodeHeader(t frameType, f flags, streamID, length uint32) header {
	var h header
	h[0] = protoVersion
	h[1] = byte(t)
	binary.BigEndian.PutUint16(h[2:4], uint16(f))
	binary.BigEndian.PutUint32(h[4:8], streamID)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

func (h header) version() uint8   { return h[0] }
func (h header) typ() frameType   { return frameType(h[1]) }
func (h header) flags() flags     { return flags(binary.BigEndian.Uint16(h[2:4])) }
func (h header) streamID() uint32 { return binary.BigEndian.Uint32(h[4:8]) }
func (h header) length() uint32   { return binary.BigEndian.Uint32(h[8:12]) }
func (h header) has(f flags) bool { return h.flags()&f == f }
func (h header) String() string {
	return fmt.Sprintf("{v%d %v flags=%#x id=%d len=%d}", h.version(), h.typ(), uint16(h.flags()), h.streamID(), h.length())
}

// validate checks what can be checked from the header alone. maxData is the
// largest Data payload this end could ever have granted credit for; anything
// larger is a protocol error before a single payload byte is read, so a
// 4 GiB length field never turns into an allocation. The returned error
// wraps [ErrProtocol].
func (h header) validate(maxData uint32) error {
	if v := h.version(); v != protoVersion {
		return fmt.Errorf("%w: version %d", ErrInvalidVersion, v)
	}
	t := h.typ()
	if t >= numFrameTypes {
		return fmt.Errorf("%w: type %d", ErrInvalidType, uint8(t))
	}
	id := h.streamID()
	switch t {
	case typeData, typeWindowUpdate:
		if id == 0 && h.flags()&flagSYN != 0 {
			// Opening stream 0 is a broken peer; any other frame on it
			// names no stream and is ignored (spec.md §8).
			return fmt.Errorf("%w: SYN on stream 0", ErrProtocol)
		}
		if t == typeData && h.length() > maxData {
			return fmt.Errorf("%w: data frame of %d bytes exceeds any window we grant (%d)", ErrProtocol, h.length(), maxData)
		}
	case typePing, typeGoAway:
		if id != 0 {
			return fmt.Errorf("%w: %v on stream %d", ErrProtocol, t, id)
		}
	}
	return nil
}
