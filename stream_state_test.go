package yamux

import (
	"strings"
	"testing"
)

// effectNames spells effects for test messages.
var effectNames = []string{"Wake", "Discard", "Drop", "Credit", "Buffer", "FIN", "RST", "RSTInOrder", "CloseTimer", "StopOpenTimer", "Forget", "Fail"}

func (e effect) String() string {
	var parts []string
	for i, name := range effectNames {
		if e&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// TestNextTable: every rule of the stream's state machine, one row each.
// A new rule is a new row.
func TestNextTable(t *testing.T) {
	open := streamState{acked: true}
	closedOpen := streamState{acked: true, closed: true, send: halfFIN}
	finIn := streamState{acked: true, recv: halfFIN}
	finOut := streamState{acked: true, send: halfFIN}
	shut := streamState{acked: true, readShut: true}
	dead := streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true}
	cases := []struct {
		name string
		from streamState
		ev   event
		want streamState
		eff  effect
	}{
		// The application.
		{"CloseWrite queues FIN and arms the close timer", open, evCloseWrite,
			streamState{acked: true, send: halfFIN}, effFIN | effWake | effCloseTimer},
		{"CloseWrite after the peer's FIN finishes the stream", finIn, evCloseWrite,
			streamState{acked: true, send: halfFIN, recv: halfFIN, forgotten: true}, effFIN | effWake | effForget | effStopOpenTimer},
		{"second CloseWrite does nothing", finOut, evCloseWrite, finOut, 0},
		{"CloseWrite on a reset stream does nothing", dead, evCloseWrite, dead, 0},
		{"Close discards, queues FIN", open, evClose,
			streamState{acked: true, closed: true, send: halfFIN}, effDiscard | effWake | effFIN | effCloseTimer},
		{"Close after CloseWrite queues no second FIN", finOut, evClose,
			streamState{acked: true, closed: true, send: halfFIN}, effDiscard | effWake},
		{"CloseRead discards", open, evCloseRead, shut, effDiscard | effWake},
		{"Reset sends RST behind our data and forgets", open, evReset,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true},
			effRSTInOrder | effDiscard | effWake | effFail | effForget | effStopOpenTimer},
		{"Reset after the peer's FIN gives the data up too", finIn, evReset,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true},
			effRSTInOrder | effDiscard | effWake | effFail | effForget | effStopOpenTimer},
		{"Reset of a finished stream sends nothing but fails Reads",
			streamState{acked: true, send: halfFIN, recv: halfFIN, forgotten: true}, evReset,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true}, effDiscard | effWake | effFail},
		{"Reset twice does nothing", dead, evReset, dead, 0},

		// The peer.
		{"data is buffered", open, evData, open, effBuffer | effWake},
		{"data after Close resets behind our FIN", closedOpen, evData,
			streamState{acked: true, closed: true, send: halfReset, recv: halfReset, forgotten: true},
			effDrop | effRSTInOrder | effWake | effFail | effForget | effStopOpenTimer},
		{"data after CloseRead is dropped and credited", shut, evData, shut, effDrop | effCredit},
		{"data on a reset stream is dropped", dead, evData, dead, effDrop},
		{"FIN ends the receive half", open, evFIN, finIn, effWake},
		{"FIN after ours finishes the stream", finOut, evFIN,
			streamState{acked: true, send: halfFIN, recv: halfFIN, forgotten: true}, effWake | effForget | effStopOpenTimer},
		{"second FIN does nothing", finIn, evFIN, finIn, 0},
		{"RST discards what is unfinished", open, evRST,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true},
			effDiscard | effWake | effFail | effStopOpenTimer | effForget},
		{"RST keeps what the FIN completed", finIn, evRST,
			streamState{acked: true, send: halfReset, recv: halfFIN, forgotten: true},
			effWake | effFail | effStopOpenTimer | effForget},
		{"RST on a reset stream does nothing", dead, evRST, dead, 0},
		{"ACK stops the open timer", streamState{}, evAck, streamState{acked: true}, effStopOpenTimer},

		// Timers and the session.
		{"open timeout resets ahead of our data", streamState{}, evOpenTimeout,
			streamState{send: halfReset, recv: halfReset, forgotten: true},
			effRST | effDiscard | effWake | effFail | effForget | effStopOpenTimer},
		{"open timeout after the ACK does nothing", open, evOpenTimeout, open, 0},
		{"close timeout resets behind our FIN", finOut, evCloseTimeout,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true},
			effRSTInOrder | effDiscard | effWake | effFail | effForget | effStopOpenTimer},
		{"close timeout after the peer's FIN does nothing", finIn, evCloseTimeout, finIn, 0},
		{"session end keeps received data readable", open, evSessionEnd,
			streamState{acked: true, send: halfReset, recv: halfReset, forgotten: true}, effWake | effFail | effStopOpenTimer},
		{"session end keeps a finished receive half", finIn, evSessionEnd,
			streamState{acked: true, send: halfReset, recv: halfFIN, forgotten: true}, effWake | effFail | effStopOpenTimer},
	}
	for _, c := range cases {
		got, eff := next(c.from, c.ev)
		if got != c.want || eff != c.eff {
			t.Errorf("%s: next(%+v, %v) = %+v, %v; want %+v, %v", c.name, c.from, c.ev, got, eff, c.want, c.eff)
		}
	}
}

// TestNextInvariants walks every reachable state through every event and
// checks the rules no row may break: a reset half never reopens, a stream
// is forgotten once both halves are done and never un-forgotten, at most
// one RST and one FIN leave per stream, and a FIN never follows an RST.
func TestNextInvariants(t *testing.T) {
	type walk struct {
		s          streamState
		fins, rsts int
	}
	seen := map[walk]bool{}
	queue := []walk{{s: streamState{}}, {s: streamState{acked: true}}}
	events := []event{evCloseWrite, evClose, evCloseRead, evReset, evAck, evData, evFIN, evRST, evOpenTimeout, evCloseTimeout, evSessionEnd}
	for len(queue) > 0 {
		w := queue[0]
		queue = queue[1:]
		if seen[w] {
			continue
		}
		seen[w] = true
		for _, ev := range events {
			n, e := next(w.s, ev)
			nw := walk{s: n, fins: w.fins, rsts: w.rsts}
			if e&effFIN != 0 {
				nw.fins++
				if w.rsts > 0 {
					t.Errorf("%+v --%v--> FIN after RST", w.s, ev)
				}
			}
			if e&(effRST|effRSTInOrder) != 0 {
				nw.rsts++
			}
			if nw.fins > 1 || nw.rsts > 1 {
				t.Errorf("%+v --%v--> %d FINs, %d RSTs", w.s, ev, nw.fins, nw.rsts)
				continue
			}
			if w.s.send == halfReset && n.send != halfReset || w.s.recv == halfReset && n.recv != halfReset {
				t.Errorf("%+v --%v--> %+v reopens a reset half", w.s, ev, n)
			}
			if w.s.forgotten && !n.forgotten {
				t.Errorf("%+v --%v--> %+v un-forgets", w.s, ev, n)
			}
			if n.send != halfOpen && n.recv != halfOpen && !n.forgotten {
				t.Errorf("%+v --%v--> %+v is done but not forgotten", w.s, ev, n)
			}
			if e&effForget != 0 && w.s.forgotten {
				t.Errorf("%+v --%v--> forgets twice", w.s, ev)
			}
			queue = append(queue, nw)
		}
	}
	if len(seen) < 20 {
		t.Fatalf("walked only %d states", len(seen))
	}
}
