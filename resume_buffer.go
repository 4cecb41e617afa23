package yamux

import (
	"net"
	"sync"
)

// This file holds the replay buffer of the resumption layer (spec.md §13):
// the bytes written to a resumable connection that the peer has not yet
// acknowledged. It is pure bookkeeping over byte offsets; no I/O, no
// locks (the resumable connection guards it with its mutex).

// replayChunkSize is the unit the replay buffer grows and shrinks by. An
// idle connection whose bytes were all acknowledged holds no chunk.
const replayChunkSize = 32 << 10

var replayChunks = sync.Pool{New: func() any { b := make([]byte, 0, replayChunkSize); return &b }}

// replayBuffer holds the bytes of offsets [base, end) of the outgoing
// byte stream in chunks: every chunk is full but the last. Offsets count
// from the first byte the session ever wrote, across reconnections.
type replayBuffer struct {
	chunks []*[]byte
	base   uint64 // offset of chunks[0][0]
	end    uint64 // offset after the last byte written
}

// write appends p.
func (b *replayBuffer) write(p []byte) {
	if len(b.chunks) == 0 {
		b.base = b.end
	}
	for len(p) > 0 {
		if len(b.chunks) == 0 || len(*b.chunks[len(b.chunks)-1]) == replayChunkSize {
			c := replayChunks.Get().(*[]byte)
			*c = (*c)[:0]
			b.chunks = append(b.chunks, c)
		}
		last := b.chunks[len(b.chunks)-1]
		n := min(len(p), replayChunkSize-len(*last))
		*last = append(*last, p[:n]...)
		p = p[n:]
		b.end += uint64(n)
	}
}

// segments appends to dst the slices that hold offsets [from, from+limit)
// or up to end, and returns dst and the number of bytes they hold. from
// must be in [base, end]. The slices stay valid until release frees their
// chunks.
func (b *replayBuffer) segments(from uint64, limit int, dst net.Buffers) (net.Buffers, int) {
	total := 0
	off := b.base
	for _, c := range b.chunks {
		if total >= limit {
			break
		}
		cend := off + uint64(len(*c))
		if cend > from {
			start := 0
			if from > off {
				start = int(from - off)
			}
			seg := (*c)[start:]
			if len(seg) > limit-total {
				seg = seg[:limit-total]
			}
			dst = append(dst, seg)
			total += len(seg)
		}
		off = cend
	}
	return dst, total
}

// release frees the chunks that hold only offsets below upTo.
func (b *replayBuffer) release(upTo uint64) {
	n := 0
	for n < len(b.chunks) {
		c := b.chunks[n]
		cend := b.base + uint64(len(*c))
		// A partly filled last chunk below upTo goes too: the next
		// write starts a new one at end.
		if cend > upTo {
			break
		}
		b.base = cend
		replayChunks.Put(c)
		b.chunks[n] = nil
		n++
	}
	if n > 0 {
		b.chunks = append(b.chunks[:0], b.chunks[n:]...)
		if len(b.chunks) == 0 {
			// The list itself stays: at most ReplayBuffer/replayChunkSize
			// pointers (1 KiB at the default), not regrown per burst.
			b.base = b.end
		}
	}
}

// held reports the bytes of memory the buffer holds now.
func (b *replayBuffer) held() int { return len(b.chunks) * replayChunkSize }

// free gives every chunk back. The buffer must not be used afterwards
// except for end.
func (b *replayBuffer) free() {
	for i, c := range b.chunks {
		replayChunks.Put(c)
		b.chunks[i] = nil
	}
	b.chunks = nil
	b.base = b.end
}
