package yamux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// This file is the message layer (spec.md §10): one message is one named
// stream (§9) whose name is the channel behind a reserved prefix. The
// sender writes the preface, a five-byte header (flags, length), the
// message and FIN in one go; the receiver, a [Router], answers with the §9
// status and a message status once it holds the whole message (or, for
// SendAck, once the handler returned). The yamux framing is unchanged.

// Errors of the message layer. Whether a failed message was delivered:
// an error that wraps [ErrMessageUnconfirmed] means it may have been;
// every other error from [Session.Send] and [Session.SendAck] means it was
// not.
var (
	// ErrUnknownChannel is returned by [Session.Send] and
	// [Session.SendAck] when the peer's [Router] has no handler for the
	// channel. The message was not delivered.
	ErrUnknownChannel = errors.New("yamux: unknown message channel")

	// ErrInvalidChannel is returned by [Session.Send] and
	// [Session.SendAck] for a channel name longer than 250 bytes; no
	// stream is opened.
	ErrInvalidChannel = errors.New("yamux: invalid message channel")

	// ErrMessageTooLarge is returned by [Session.Send] and
	// [Session.SendAck] when the peer's Router refused the message because
	// it exceeds its [Router.MaxMessageSize] (the peer read only the
	// length, never the message), or, before anything is sent, for a
	// message longer than the format's 4 GiB - 1. The message was not
	// delivered.
	ErrMessageTooLarge = errors.New("yamux: message too large")

	// ErrMessageRefused is returned by [Session.Send] and
	// [Session.SendAck] when the peer refused the message for another
	// reason: it was malformed (fewer or more bytes than its length said,
	// or unknown header flags), or the peer answered with a status this
	// version does not know. The message was not delivered.
	ErrMessageRefused = errors.New("yamux: message refused")

	// ErrMessageUnconfirmed is wrapped, together with the cause (ctx.Err(),
	// [ErrStreamReset], a session error), by the errors of
	// [Session.Send] and [Session.SendAck] when the whole message and its
	// FIN were sent but no answer came: the peer may have delivered it or
	// not, and only the application can tell (for example by making
	// messages idempotent and sending again).
	ErrMessageUnconfirmed = errors.New("yamux: message sent, delivery unconfirmed")
)

// Message-layer constants (spec.md §10).
const (
	// reservedNamePrefix starts every stream name reserved for layers of
	// this library; Router.Handle and OpenNamed refuse such names.
	reservedNamePrefix = "\x00"
	// messageNamePrefix followed by the channel is a message stream's name.
	messageNamePrefix = "\x00msg/"
	maxChannelName    = maxStreamName - len(messageNamePrefix) // 250

	messageHeaderLen      = 5 // flags, then the length as a big-endian uint32
	messageFlagAck   byte = 1 // answer after the handler returned

	messageOK        byte = 0 // received whole (Send), or handled (SendAck)
	messageTooLarge  byte = 1 // the length exceeds the receiver's limit: FIN, then RST
	messageMalformed byte = 2 // unknown flags, or not exactly length bytes before FIN: FIN, then RST

	defaultMaxMessageSize        = 1 << 20
	defaultMaxConcurrentMessages = 64
	defaultMessageTimeout        = 30 * time.Second

	// slotProbeInterval is how often a message waiting for a handler
	// slot checks that its sender has not given up.
	slotProbeInterval = time.Second

	// smallMessage: a message up to this size is copied behind its
	// preface and header, so that it goes out in one Write.
	smallMessage = 64 << 10
)

// Message is one message received on a channel, as a [Router] hands it to
// the function registered with [Router.HandleMessage].
type Message struct {
	// Session is the session the message arrived on: use it to answer
	// ([Session.Send]) or to identify the peer ([Session.PeerID]).
	Session *Session
	// Channel is the channel the message was sent on; "" is the default
	// channel.
	Channel string
	// Data is the whole message. It is the handler's: it may keep it.
	Data []byte
}

// messageHandler receives messages of one channel. It is registered in the
// Router's table under messageNamePrefix+channel; Router.ServeStream calls
// it without answering the preface, since serve answers it together with
// the message.
type messageHandler struct {
	r       *Router
	channel string
	f       func(m Message)
}

// HandleMessage registers f for messages sent on channel with
// [Session.Send] or [Session.SendAck]; "" is the default channel. The
// Router reads each message whole, within its limits (MaxMessageSize,
// MaxConcurrentMessages, MessageTimeout), and calls f on the stream's
// goroutine, so handlers of different messages run concurrently; f may
// block, and the message keeps its slot until f returns. A message
// arrives at most once, and only whole. It panics when channel is longer
// than 250 bytes, when f is nil, or when channel already has a handler:
// those are programming errors. It is safe for concurrent use.
func (r *Router) HandleMessage(channel string, f func(m Message)) {
	if err := checkChannel(channel); err != nil {
		panic(err)
	}
	if f == nil {
		panic(fmt.Sprintf("yamux: Router.HandleMessage: nil handler for channel %q", channel))
	}
	r.register(messageNamePrefix+channel, &messageHandler{r: r, channel: channel, f: f})
}

func checkChannel(channel string) error {
	if len(channel) > maxChannelName {
		return fmt.Errorf("%w: length %d over %d", ErrInvalidChannel, len(channel), maxChannelName)
	}
	return nil
}

// ServeStream receives one message on st, whose preface the Router has
// read but not answered, and answers it (spec.md §10).
func (h *messageHandler) ServeStream(st *Stream) {
	r := h.r
	var hdr [messageHeaderLen]byte
	st.SetReadDeadline(deadlineIn(r.prefaceTimeout()))
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		r.msgStats.abandoned.Add(1)
		st.Reset()
		return
	}
	flags, n := hdr[0], binary.BigEndian.Uint32(hdr[1:])
	switch {
	case flags&^messageFlagAck != 0:
		r.msgStats.malformed.Add(1)
		st.Session().logger.Debug("yamux: message with unknown flags; refusing", "stream", st.StreamID(), "channel", h.channel, "flags", flags)
		refuseMessage(st, messageMalformed)
		return
	case uint64(n) > uint64(r.maxMessageSize()):
		// Refused from its length alone: not a byte of it is buffered.
		r.msgStats.tooLarge.Add(1)
		st.Session().logger.Debug("yamux: message too large; refusing", "stream", st.StreamID(), "channel", h.channel, "len", n)
		refuseMessage(st, messageTooLarge)
		return
	}
	st.SetReadDeadline(time.Time{})
	if !r.acquireSlot(st) {
		r.msgStats.abandoned.Add(1)
		st.Reset()
		return
	}
	defer r.releaseSlot()

	st.SetReadDeadline(deadlineIn(r.messageTimeout()))
	data, whole, err := readMessage(st, int(n))
	switch {
	case err != nil: // reset, timed out, or the session ended
		r.msgStats.abandoned.Add(1)
		st.Reset()
		return
	case !whole:
		r.msgStats.malformed.Add(1)
		st.Session().logger.Debug("yamux: message not as long as announced; refusing", "stream", st.StreamID(), "channel", h.channel, "len", n)
		refuseMessage(st, messageMalformed)
		return
	}
	st.SetReadDeadline(time.Time{})
	m := Message{Session: st.Session(), Channel: h.channel, Data: data}
	answer := messageAnswerOK
	if flags&messageFlagAck != 0 {
		r.msgStats.delivered.Add(1)
		h.f(m)
		if _, err := st.Write(answer); err != nil {
			st.Reset()
			return
		}
		st.Close()
		return
	}
	// Deliver only what was confirmed: a sender that gave up before the
	// answer went out reports the message as unconfirmed, and it is not
	// delivered behind its back.
	if _, err := st.Write(answer); err != nil {
		r.msgStats.abandoned.Add(1)
		st.Reset()
		return
	}
	st.Close()
	r.msgStats.delivered.Add(1)
	h.f(m)
}

// messageAnswerOK is the answer to a delivered message. Shared: Write only
// reads it.
var messageAnswerOK = []byte{prefaceOK, messageOK}

// readMessage reads exactly n bytes and the FIN behind them. whole is
// false when the FIN came early or data followed the n bytes; err is the
// stream's error otherwise (reset, deadline, session end). The buffer
// grows with what arrives, to at most 64 KiB or twice what came, so that
// a length the sender does not follow up costs at most 64 KiB.
func readMessage(st *Stream, n int) (data []byte, whole bool, err error) {
	const first = 64 << 10
	buf := make([]byte, 0, min(n, first))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := st.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF && len(buf) < n {
			return nil, false, nil
		}
		if err != nil && err != io.EOF {
			return nil, false, err
		}
	}
	var one [1]byte
	switch _, err := io.ReadFull(st, one[:]); err {
	case io.EOF:
		return buf, true, nil
	case nil:
		return nil, false, nil // more than n bytes
	default:
		return nil, false, err
	}
}

// refuseMessage answers the preface with OK and the message with status,
// then sends FIN and RST, as refuseStream does for §9 refusals: the FIN
// makes the answer survive the RST, the RST stops a sender still writing.
func refuseMessage(st *Stream, status byte) {
	if _, err := st.Write([]byte{prefaceOK, status}); err == nil {
		st.CloseWrite()
	}
	st.Reset()
}

// acquireSlot takes one of MaxConcurrentMessages slots for st's message.
// While it waits, the message stays unread in the stream's window; the
// wait ends when a slot frees, the session ends, or a probe (once every
// slotProbeInterval) finds the stream reset (false).
func (r *Router) acquireSlot(st *Stream) bool {
	slots := r.messageSlots()
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(slotProbeInterval)
	defer t.Stop()
	for {
		select {
		case slots <- struct{}{}:
			return true
		case <-st.Session().Done():
			return false
		case <-t.C:
			// A zero-length Write sends nothing and reports a stream
			// that was reset, also one whose message and FIN are in (a
			// Read would still see their data).
			if _, err := st.Write(nil); err != nil {
				return false
			}
		}
	}
}

func (r *Router) releaseSlot() { <-r.messageSlots() }

// messageSlots returns the slot semaphore, made on first use with the
// MaxConcurrentMessages of that moment.
func (r *Router) messageSlots() chan struct{} {
	r.slotsOnce.Do(func() {
		n := r.MaxConcurrentMessages
		if n <= 0 {
			n = defaultMaxConcurrentMessages
		}
		r.slots = make(chan struct{}, n)
	})
	return r.slots
}

func (r *Router) prefaceTimeout() time.Duration {
	return timeoutOr(r.PrefaceTimeout, defaultPrefaceTimeout)
}

func (r *Router) maxMessageSize() int {
	if r.MaxMessageSize <= 0 {
		return defaultMaxMessageSize
	}
	return r.MaxMessageSize
}

func (r *Router) messageTimeout() time.Duration {
	return timeoutOr(r.MessageTimeout, defaultMessageTimeout)
}

// Send sends data as one message (spec.md §10) on channel to the peer's
// [Router], which hands it to the function registered with
// [Router.HandleMessage] ("" is the default channel). The message is
// delivered whole or not at all: the peer hands nothing to its handler
// before it holds every byte and the sender's FIN. Send opens one stream
// for it and blocks until the peer confirms it holds the whole message
// (one round trip, plus the time to send data; longer while the peer has
// MaxConcurrentMessages messages in hand), or until ctx ends; it does not
// wait for the handler (see [Session.SendAck]).
//
// It returns nil once the peer confirmed the message; then the handler is
// called, even if the session ends right after. The errors say whether
// the message was delivered:
//   - not delivered: [ErrInvalidChannel], [ErrUnknownChannel],
//     [ErrMessageTooLarge], [ErrMessageRefused], [ErrBadStreamPreface] (the
//     peer is not a message Router), the errors of [Session.OpenStream],
//     and ctx.Err(), [ErrStreamReset] or a session error while the message
//     was still being written (no FIN was sent, so the peer cannot deliver
//     it);
//   - perhaps delivered: an error wrapping [ErrMessageUnconfirmed] and
//     ctx.Err(), [ErrStreamReset] or a session error, when the whole
//     message was sent but the answer did not come.
//
// Order: each message is its own stream and the peer runs each handler on
// its own goroutine, so concurrent Sends arrive in no particular order,
// and even after one Send returned, the handler of a later message may
// run before (or while) the handler of the earlier one. A caller that
// needs order waits for each [Session.SendAck].
//
// Send is safe for concurrent use. It does not keep data after it returns.
func (s *Session) Send(ctx context.Context, channel string, data []byte) error {
	return s.sendMessage(ctx, channel, data, false, uint64(len(data)))
}

// SendAck is [Session.Send] that also waits for the peer's handler to have
// returned: the peer answers only then. A caller that waits for each
// SendAck to return nil before it sends the next has its messages handled
// one after another, in order. It returns the errors of Send; when ctx ends while the handler
// runs, the error wraps [ErrMessageUnconfirmed] and ctx.Err(), although
// the handler has the message. It is safe for concurrent use.
func (s *Session) SendAck(ctx context.Context, channel string, data []byte) error {
	return s.sendMessage(ctx, channel, data, true, uint64(len(data)))
}

// sendMessage sends data as a message whose header claims a length of
// claim bytes: len(data), except in tests of peers that lie.
func (s *Session) sendMessage(ctx context.Context, channel string, data []byte, ack bool, claim uint64) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	if claim > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes, over the format's %d", ErrMessageTooLarge, claim, uint32(math.MaxUint32))
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		return err
	}
	nameLen := len(messageNamePrefix) + len(channel)
	headLen := 1 + nameLen + messageHeaderLen
	buf := getMessageBuffer(headLen, len(data))
	head := (*buf)[:headLen]
	head[0] = byte(nameLen)
	copy(head[1+copy(head[1:], messageNamePrefix):], channel)
	var flags byte
	if ack {
		flags = messageFlagAck
	}
	head[1+nameLen] = flags
	binary.BigEndian.PutUint32(head[headLen-4:], uint32(claim))

	// ctx ending fails the blocked Write or Read through a past deadline.
	fired := make(chan struct{})
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			st.SetDeadline(aLongTimeAgo)
			close(fired)
		})
	}
	werr := writeMessage(st, head, data)
	putMessageBuffer(buf) // Write does not keep it once it returned
	// After a failed write this does not block: the stream is reset (an
	// answer before the peer's FIN stays readable), dead or past its
	// deadline.
	answer, rerr := readMessageAnswer(st)
	if !stop() {
		<-fired
		if rerr != nil {
			rerr = ctx.Err()
		}
		if werr != nil {
			werr = ctx.Err()
		}
	}
	if rerr == nil { // the peer answered: delivered, or definitely not
		st.Close()
		if answer != nil {
			return fmt.Errorf("%w (channel %q)", answer, channel)
		}
		return nil
	}
	st.Reset()
	if werr != nil {
		return werr // no FIN was sent: the peer cannot deliver it
	}
	return fmt.Errorf("%w: %w", ErrMessageUnconfirmed, rerr)
}

// Sender buffers for the preface, header and a small message, pooled in
// two classes: a message up to 4 KiB, and up to smallMessage.
var (
	messageBufferSizes = [2]int{4 << 10, smallMessage}
	messageBuffers     = [2]sync.Pool{
		{New: newMessageBuffer(messageBufferSizes[0])},
		{New: newMessageBuffer(messageBufferSizes[1])},
	}
)

func newMessageBuffer(n int) func() any {
	return func() any { b := make([]byte, 0, 1+maxStreamName+messageHeaderLen+n); return &b }
}

// getMessageBuffer returns a buffer with room for headLen bytes and, when
// it is small enough to travel with them, a message of n bytes.
func getMessageBuffer(headLen, n int) *[]byte {
	for i, size := range messageBufferSizes {
		if n <= size {
			return messageBuffers[i].Get().(*[]byte)
		}
	}
	b := make([]byte, 0, headLen)
	return &b
}

func putMessageBuffer(b *[]byte) {
	for i, size := range messageBufferSizes {
		if cap(*b) == 1+maxStreamName+messageHeaderLen+size {
			messageBuffers[i].Put(b)
			return
		}
	}
}

// writeMessage writes head, then data, and half-closes st. A small data
// travels in head's spare capacity, in one Write.
func writeMessage(st *Stream, head, data []byte) error {
	var err error
	if len(data) <= cap(head)-len(head) {
		_, err = st.Write(append(head, data...))
	} else if _, err = st.Write(head); err == nil {
		_, err = st.Write(data)
	}
	if err == nil {
		err = st.CloseWrite()
	}
	return err
}

// readMessageAnswer reads the peer's two answer bytes. It returns the
// outcome the peer announced as answer (nil: delivered), or an error when
// no answer could be read: the stream ended (io.ErrUnexpectedEOF), was
// reset, or failed.
func readMessageAnswer(st *Stream) (answer, err error) {
	var b [2]byte
	if _, err := io.ReadFull(st, b[:1]); err != nil {
		return nil, noAnswer(err)
	}
	switch b[0] {
	case prefaceOK:
	case prefaceUnknown:
		return ErrUnknownChannel, nil
	case prefaceMalformed:
		return fmt.Errorf("%w: the peer called it malformed", ErrBadStreamPreface), nil
	default:
		return fmt.Errorf("%w: undefined status %d", ErrBadStreamPreface, b[0]), nil
	}
	if _, err := io.ReadFull(st, b[1:]); err != nil {
		return nil, noAnswer(err)
	}
	switch b[1] {
	case messageOK:
		return nil, nil
	case messageTooLarge:
		return fmt.Errorf("%w for the peer", ErrMessageTooLarge), nil
	case messageMalformed:
		return fmt.Errorf("%w: the peer called it malformed", ErrMessageRefused), nil
	}
	return fmt.Errorf("%w: undefined status %d", ErrMessageRefused, b[1]), nil
}

func noAnswer(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("stream ended before the answer: %w", io.ErrUnexpectedEOF)
	}
	return err
}
