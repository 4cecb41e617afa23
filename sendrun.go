package yamux

import "time"

// sendRun keeps the send loop's goroutine only while the session sends:
// the loop parks between batches, and once it has taken nothing for a
// whole idle interval (sendLoopIdle, or longer: adaptLocked) its run ends
// and the goroutine exits, holding nothing. The next frame queued starts a
// new run. Ending the run at the first empty queue instead would cost
// every round trip a goroutine start,
// and each new goroutine grows its stack again to write (measured: a
// quarter slower ping-pong); waiting an idle interval costs one timer
// firing per interval while the session is active, and nothing at rest.
// The interval is short because it also decides how many send loops of a
// server's sessions live at once: a stack freed later than its neighbours
// in memory leaves room the runtime cannot give back (measured, 4,000
// pairs set up at once: 27 KB per idle pair at 100 ms, 34 KB at 1 s).
// A session whose sends come back soon after its run ended (traffic in
// bursts a second apart, say) would pay a goroutine start and a stack to
// grow for every burst, so its next run stays through twice the quiet gap
// it saw, up to maxSendLoopIdle (adaptLocked).
// Every field is guarded by sendQueue.mu.
type sendRun struct {
	running bool // a run is going; set from the start of the final run on
	parked  bool // the loop waits on wake
	exit    bool // the idle timer told the parked loop to end its run
	stopped bool // the final run has ended: the idle timer must not re-arm
	wake    chan struct{}
	start   func() // starts a run (go s.sendLoop()); called without the lock

	takes     uint64 // batches taken, counted for the idle timer
	seenTakes uint64 // takes when the idle timer last looked
	timer     *time.Timer
	armed     bool // timer is pending

	idle  time.Duration // this run's idle interval: sendLoopIdle, or longer (adaptLocked)
	ended time.Time     // when the last run ended for want of work; zero before
}

// sendLoopIdle is how long a send loop stays parked without work before
// its run ends, unless adaptLocked lengthened it for the run: it exits
// between one and two of its interval after its last batch.
// Longer than the pauses of a busy conversation on a LAN (a round trip, an
// RPC's service time; a longer pause costs one goroutine start), short
// enough that a server's idle sessions hold no send goroutine.
const sendLoopIdle = 100 * time.Millisecond

// maxSendLoopIdle bounds the idle interval of a session whose sends came
// back soon after its previous run ended: a session quiet for longer holds
// its send goroutine no longer than two of these.
const maxSendLoopIdle = 2 * time.Second

// init readies q; start starts a send loop run.
func (q *sendQueue) init(start func()) {
	q.run = sendRun{wake: make(chan struct{}, 1), start: start, idle: sendLoopIdle}
}

// unlockAndKick releases q.mu after work was queued and gets a send loop to
// it: it wakes a parked loop, or starts a run when none is going. A
// running loop looks at the queue again before it parks, so it is not
// woken twice. The wake-up or start happens after the unlock, so that the
// loop does not wait for the lock its waker still holds.
func (q *sendQueue) unlockAndKick() {
	r := &q.run
	start := !r.running
	wake := r.parked
	r.running, r.parked = true, false
	if start {
		r.adaptLocked(time.Now())
	}
	q.mu.Unlock()
	switch {
	case start:
		r.start()
	case wake:
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// kick gets a send loop to look at the queue even when nothing is queued:
// shutdown needs its final run.
func (q *sendQueue) kick() {
	q.mu.Lock()
	q.unlockAndKick()
}

// adaptLocked sets the idle interval of the run about to start. The
// session was quiet from its previous run's last batch, about that run's
// idle interval before it ended, until now; if that was less than
// maxSendLoopIdle, its traffic comes back at about that pace, and the new
// run stays through twice the gap (at most maxSendLoopIdle). Otherwise the
// interval is sendLoopIdle again.
func (r *sendRun) adaptLocked(now time.Time) {
	if r.ended.IsZero() {
		return
	}
	quiet := now.Sub(r.ended) + r.idle
	if quiet < maxSendLoopIdle {
		r.idle = min(2*quiet, maxSendLoopIdle)
	} else {
		r.idle = sendLoopIdle
	}
}

// parkLocked records that the loop is about to wait for work, and arms
// the idle timer if it is not pending.
func (q *sendQueue) parkLocked() {
	r := &q.run
	r.parked = true
	if r.armed || r.stopped {
		return
	}
	r.armed = true
	r.seenTakes = r.takes
	if r.timer == nil {
		r.timer = time.AfterFunc(r.idle, q.idleCheck)
	} else {
		r.timer.Reset(r.idle)
	}
}

// workingLocked records that the loop takes a batch.
func (r *sendRun) workingLocked() {
	r.parked, r.exit = false, false
	r.takes++
}

// endLocked reports whether the loop, finding the queue empty, ends its
// run now (the idle timer asked it to); running is cleared under the same
// lock, so that the next producer starts a new run.
func (r *sendRun) endLocked() bool {
	if !r.exit {
		return false
	}
	r.exit, r.running = false, false
	r.ended = time.Now()
	return true
}

// idleCheck is the idle timer: it ends the run of a loop that is parked
// and took nothing since the timer was armed, and otherwise looks again an
// interval later.
func (q *sendQueue) idleCheck() {
	q.mu.Lock()
	r := &q.run
	r.armed = false
	switch {
	case r.stopped:
	case r.parked && r.takes == r.seenTakes:
		r.parked, r.exit = false, true
		q.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
		return
	case r.running:
		r.armed = true
		r.seenTakes = r.takes
		r.timer.Reset(r.idle)
	}
	q.mu.Unlock()
}

// stop is the end of the final run: the idle timer is stopped for good.
func (q *sendQueue) stop() {
	q.mu.Lock()
	q.run.stopped = true
	if q.run.timer != nil {
		q.run.timer.Stop()
	}
	q.mu.Unlock()
}
