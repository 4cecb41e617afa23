package yamux

import "sync"

// Direct delivery: when a Data frame arrives for a stream whose Read is
// waiting with nothing buffered, the receive loop reads the payload from
// the connection straight into the Read's buffer (as much as fits; the
// rest goes into pooled blocks as usual), and the Read returns those
// bytes. Received data is then copied once, by the kernel, as over raw
// TCP, instead of twice (kernel to block, block to the caller).
//
// One waiting Read per session can be registered, in the session's
// directSlot, so an idle stream carries nothing for it. A Read that
// starts waiting takes the slot when it is free or merely waited on by
// another Read (which then gets its data through the blocks, as before);
// a slot being filled or handed over is left alone.
//
// The slot's life: free → waiting (a Read registered p) → filling (the
// receive loop claimed p for a frame, under the stream's mu, only when
// the stream's receive buffer is empty, so direct bytes never overtake
// buffered ones) → handed (the receive loop is done with p: n bytes of
// it are the frame's first bytes) → free (the Read took them). A Read
// never returns while the slot is filling for it: the receive loop may
// still write into p. When it must go (deadline, Close, CloseRead,
// Reset, the session's end), it asks for a read interrupt
// (connReader.interrupt: the connection's read deadline is set in the
// past), the receive loop's read returns, it hands over what it got and
// reads the rest of the frame into blocks. Only connections with read
// deadlines take part (connReader.dl); see newConnReader.

// slotState is where the direct slot is in its life.
type slotState uint8

const (
	slotFree    slotState = iota
	slotWaiting           // a Read registered p and waits
	slotFilling           // the receive loop is reading a payload into p
	slotHanded            // the receive loop put n bytes into p and let go of it
)

// directSlot is the session's one registration of a waiting Read. Its mu
// is a leaf: it is taken under Stream.mu (Read, admitData, handOff,
// applyLocked) or alone, and nothing is taken while it is held.
type directSlot struct {
	mu    sync.Mutex
	state slotState
	gen   uint64  // identifies the registration; increases with each
	st    *Stream // the stream of the registered Read (nil when free)
	p     []byte  // the Read's buffer (nil unless waiting or filling)
	n     int     // handed: bytes of p that hold data
	asked bool    // filling: the Read asked for an interrupt
}

// register makes p the buffer a frame for st may be read into, and
// returns the registration's gen, or 0 when the slot is busy (filling or
// handed).
func (d *directSlot) register(st *Stream, p []byte) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != slotFree && d.state != slotWaiting {
		return 0
	}
	d.gen++
	d.state, d.st, d.p, d.n, d.asked = slotWaiting, st, p, 0, false
	return d.gen
}

// poll reports where registration gen is: slotWaiting or slotFilling,
// slotHanded with the bytes handed (the slot is then free again), or
// slotFree when the registration is gone (taken over by another Read,
// dropped, or a fill that delivered nothing).
func (d *directSlot) poll(gen uint64) (slotState, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen {
		return slotFree, 0
	}
	switch d.state {
	case slotHanded:
		n := d.n
		d.freeLocked()
		return slotHanded, n
	case slotWaiting, slotFilling:
		return d.state, 0
	}
	return slotFree, 0
}

// unregister withdraws registration gen if it is still only waiting.
func (d *directSlot) unregister(gen uint64) {
	d.mu.Lock()
	if d.gen == gen && d.state == slotWaiting {
		d.freeLocked()
	}
	d.mu.Unlock()
}

// ask reports whether the Read of registration gen, which must go while
// its buffer is being filled, is the first to ask for the interrupt that
// ends the fill (the caller then interrupts the receive loop's read).
func (d *directSlot) ask(gen uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen || d.state != slotFilling || d.asked {
		return false
	}
	d.asked = true
	return true
}

// claim is the receive loop's: it takes the registered buffer for a frame
// of n bytes on st, if st's Read waits with one, and returns the part of
// it to fill (nil: deliver through blocks). Call with st.mu held and st's
// receive buffer empty.
func (d *directSlot) claim(st *Stream, n uint32) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != slotWaiting || d.st != st {
		return nil
	}
	d.state = slotFilling
	return d.p[:min(uint64(len(d.p)), uint64(n))]
}

// handOffLocked ends the fill: with keep, the first n bytes of the buffer
// are the Read's; otherwise the Read gets nothing from it. Call with the
// filled stream's mu held.
func (d *directSlot) handOffLocked(n int, keep bool) {
	d.mu.Lock()
	if keep && n > 0 {
		d.state, d.n, d.p = slotHanded, n, nil
	} else {
		d.freeLocked()
	}
	d.mu.Unlock()
}

// dropHanded takes back bytes handed to st's Read but not yet taken, for
// a transition that discards unread data, and returns how many. Call
// with st.mu held.
func (d *directSlot) dropHanded(st *Stream) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st != st || d.state != slotHanded {
		return 0
	}
	n := d.n
	d.freeLocked()
	return n
}

func (d *directSlot) freeLocked() {
	d.state, d.st, d.p, d.n, d.asked = slotFree, nil, nil, 0, false
}
