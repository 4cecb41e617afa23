package yamux

import "sync"

// Receive buffers come from size-classed pools and go back as soon as the
// reader drains them, so an idle stream holds no buffer at all.
var blockSizes = [...]int{1 << 10, 4 << 10, 16 << 10, 64 << 10}

// maxBlock is the largest block; a larger frame is read into several.
const maxBlock = 64 << 10

var blockPools = [len(blockSizes)]sync.Pool{
	{New: newBlock(blockSizes[0])},
	{New: newBlock(blockSizes[1])},
	{New: newBlock(blockSizes[2])},
	{New: newBlock(blockSizes[3])},
}

func newBlock(size int) func() any {
	return func() any { b := make([]byte, size); return &b }
}

// getBlock returns a pooled buffer of at least n bytes (n <= maxBlock).
func getBlock(n int) *[]byte {
	for i, size := range blockSizes {
		if n <= size {
			return blockPools[i].Get().(*[]byte)
		}
	}
	panic("yamux: block too large") // callers split at maxBlock
}

func putBlock(p *[]byte) {
	for i, size := range blockSizes {
		if cap(*p) == size {
			*p = (*p)[:size]
			blockPools[i].Put(p)
			return
		}
	}
}

// chunk is a received payload segment: data is the unread part of *buf.
type chunk struct {
	buf  *[]byte
	data []byte
}

// recvBuffer is a FIFO of received chunks. Not safe for concurrent use:
// guarded by Stream.mu.
type recvBuffer struct {
	chunks []chunk
	head   int
	size   int // unread bytes
}

func (r *recvBuffer) push(c chunk) {
	if len(r.chunks) == cap(r.chunks) && r.head >= len(r.chunks)/2 && r.head > 0 {
		// Drained entries at the front: reuse their room instead of
		// growing, so that a reader that never quite catches up does not
		// make the slice grow for the life of the stream.
		n := copy(r.chunks, r.chunks[r.head:])
		clear(r.chunks[n:])
		r.chunks = r.chunks[:n]
		r.head = 0
	}
	r.chunks = append(r.chunks, c)
	r.size += len(c.data)
}

// pushCopy appends a copy of a small payload, into the spare room of the
// last block when it fits (no allocation: the block's capacity is there).
func (r *recvBuffer) pushCopy(p []byte) {
	if n := len(r.chunks); n > r.head {
		c := &r.chunks[n-1]
		if cap(c.data)-len(c.data) >= len(p) {
			c.data = append(c.data, p...)
			r.size += len(p)
			return
		}
	}
	b := getBlock(len(p))
	r.push(chunk{buf: b, data: append((*b)[:0], p...)})
}

// read copies into p and returns drained blocks to their pool.
func (r *recvBuffer) read(p []byte) int {
	n := 0
	for n < len(p) && r.head < len(r.chunks) {
		c := &r.chunks[r.head]
		m := copy(p[n:], c.data)
		n += m
		c.data = c.data[m:]
		if len(c.data) == 0 {
			putBlock(c.buf)
			*c = chunk{}
			r.head++
		}
	}
	r.size -= n
	if r.head == len(r.chunks) {
		r.reset()
	}
	return n
}

// reset drops everything. A small chunk slice is kept for reuse; a large
// one is let go so that a stream that once buffered a lot does not hold on.
func (r *recvBuffer) reset() {
	for i := r.head; i < len(r.chunks); i++ {
		putBlock(r.chunks[i].buf)
		r.chunks[i] = chunk{}
	}
	if cap(r.chunks) > 64 {
		r.chunks = nil
	} else {
		r.chunks = r.chunks[:0]
	}
	r.head, r.size = 0, 0
}
