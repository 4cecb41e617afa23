// peer.mjs is the JavaScript end of the interop tests: the yamux muxer of
// js-libp2p (@chainsafe/libp2p-yamux) over a plain TCP socket, run by Node 20
// or newer and driven by the Go tests (../jspeer_test.go starts it,
// ../js_test.go and ../js_control_test.go run the scenarios).
//
//	node peer.mjs server
//	    Listens on 127.0.0.1, port chosen by the kernel, prints
//	    {"event":"listening","port":N}, and serves one connection as the
//	    yamux server. The first line of every stream the Go client opens is a
//	    command (serveStream, below); "echo" sends everything back. Exits when
//	    the connection ends.
//
//	node peer.mjs client PORT SCENARIO [ARGS...]
//	    Connects to a Go yamux server on 127.0.0.1:PORT as the yamux client,
//	    runs SCENARIO (the scenarios object, below), prints {"event":"done"},
//	    closes the connection and exits.
//
// Everything the Go tests assert on is a JSON line on stdout, one object
// with an "event" field each. Errors are reported by their name
// (StreamResetError, MuxerClosedError, ...), "ok" when there was none, or
// "eof" for a read that ended cleanly. A failure prints
// {"event":"error","message":...} and exits with status 1.
// DEBUG='yamux-interop*,yamux-interop*:trace' in the environment logs the
// muxer's frames on stderr (the tests show stderr when they fail).

// The muxer uses Promise.withResolvers, which Node only has from version 22.
// The modules that use it are imported below, after the polyfill.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const net = await import('node:net')
const crypto = await import('node:crypto')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { AbstractMultiaddrConnection, ipPortToMultiaddr } = await import('@libp2p/utils')
const { defaultLogger } = await import('@libp2p/logger')

const logger = defaultLogger()

// emit writes one result line.
function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// exit ends the process once everything emitted has been written: stdout
// is a pipe, written asynchronously, and process.exit does not wait for it.
function exit (code) {
  process.exitCode = code
  process.stdout.write('', () => process.exit(code))
}

function fail (err) {
  emit({ event: 'error', message: String(err?.stack ?? err) })
  exit(1)
}

process.on('uncaughtException', fail)
process.on('unhandledRejection', fail)

// errName names an error for the reports: its name, or "ok" for none.
function errName (err) {
  if (err == null) return 'ok'
  return err.name ?? String(err)
}

// SocketConnection is the libp2p MultiaddrConnection the muxer runs on: a
// Node net.Socket, as @libp2p/tcp 11's toMultiaddrConnection makes it
// (without its inactivity timeout, metrics and Unix socket support).
class SocketConnection extends AbstractMultiaddrConnection {
  constructor (socket, direction) {
    super({
      remoteAddr: ipPortToMultiaddr(socket.remoteAddress, socket.remotePort),
      direction,
      log: logger.forComponent(`yamux-interop:${direction}`)
    })
    this.socket = socket
    socket.setNoDelay(true)
    socket.on('data', (buf) => { this.onData(buf) })
    socket.on('error', (err) => { this.abort(err) })
    socket.once('end', () => { this.onTransportClosed() })
    socket.once('close', (hadError) => {
      if (hadError) {
        this.abort(new Error('TCP transmission error'))
        return
      }
      this.onTransportClosed()
    })
    socket.on('drain', () => { this.safeDispatchEvent('drain') })
  }

  sendData (data) {
    let sentBytes = 0
    let canSendMore = true
    for (const buf of data) {
      sentBytes += buf.byteLength
      canSendMore = this.socket.write(buf)
      if (!canSendMore) break
    }
    return { sentBytes, canSendMore }
  }

  async sendClose () {
    if (this.socket.destroyed) return
    const closed = new Promise((resolve) => this.socket.once('close', resolve))
    this.socket.destroySoon()
    await closed
  }

  // sendReset resets the TCP connection, as @libp2p/tcp does when a
  // connection is aborted.
  sendReset () {
    if (this.socket.writableEnded) {
      this.socket.destroy()
      return
    }
    this.socket.resetAndDestroy()
  }

  sendPause () {
    this.socket.pause()
  }

  sendResume () {
    this.socket.resume()
  }
}

// maxStreamWindow is the package's default cap on a stream's receive
// window, which it grows by itself (auto-tuning).
const maxStreamWindow = 16 << 20

// newMuxer starts the muxer on socket: the client when direction is
// 'outbound'. Its configuration is the package's default but for one
// setting. By default a stream's read buffer holds 4 MiB
// (maxReadBufferLength), less than the window the muxer itself grows to
// (16 MiB). Pausing a stream, the muxer's only backpressure, stops its
// window updates, but the sender may still send the window already granted,
// and the muxer resets the stream (StreamBufferError) when that exceeds
// 4 MiB: a Go client sending 64 MiB to a default echo server is reset after
// a few MiB. So the buffer here holds a whole window.
//
// The muxer pings at once when it starts (its keepalive), and a ping answer
// that arrives after it gave up on the ping is a protocol error to it
// (UnRequestedPingError): it sends GoAway(protocol error) and resets the
// connection. It gives up on its keepalive ping when it stops its
// keepalive, which it does on receiving GoAway. So that a Go end's early
// GoAway cannot meet the answer to that first ping, nothing starts until
// the answer has come: the returned started promise (TestJSLatePingAnswer
// shows the failure itself).
function newMuxer (socket, direction) {
  const conn = new SocketConnection(socket, direction)
  const muxer = yamux({ streamOptions: { maxReadBufferLength: maxStreamWindow } })().createStreamMuxer(conn)
  const started = muxer.ping({ signal: AbortSignal.timeout(5000) })
  return { conn, muxer, started }
}

// Reader reads a stream sequentially. It pauses the stream (which stops the
// muxer's window updates) while more than highWater bytes wait unread, and
// resumes it when they are consumed.
const highWater = 1 << 20

class Reader {
  constructor (stream) {
    this.stream = stream
    this.chunks = []
    this.buffered = 0
    this.ended = false
    this.error = null
    this.notify = null
    stream.addEventListener('message', (evt) => {
      const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
      this.chunks.push(data)
      this.buffered += data.byteLength
      if (this.buffered > highWater && stream.readStatus === 'readable') {
        stream.pause()
      }
      this.wake()
    })
    // 'end': no more data will be delivered (FIN, reset or the session's
    // end); 'close' follows, with an error if the stream was reset or
    // aborted. Both come in one synchronous dispatch, so a read woken by
    // 'end' sees the error of the 'close' that came with it.
    stream.addEventListener('end', () => { this.ended = true; this.wake() })
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) this.error = evt.error
      this.ended = true
      this.wake()
    })
  }

  wake () {
    const n = this.notify
    this.notify = null
    n?.()
  }

  // read returns the next chunk, or null at a clean end; it throws the
  // error of a stream that was reset or aborted, after the data that came
  // before it.
  async read () {
    for (;;) {
      if (this.chunks.length > 0) {
        const c = this.chunks.shift()
        this.buffered -= c.byteLength
        if (this.buffered <= highWater / 4 && this.stream.readStatus === 'paused') {
          this.stream.resume()
        }
        return c
      }
      if (this.error != null) throw this.error
      if (this.ended) return null
      await new Promise((resolve) => { this.notify = resolve })
    }
  }

  // readLine reads up to and including '\n' and returns the line without
  // it. Bytes after the newline stay for the next read.
  async readLine () {
    let line = ''
    for (;;) {
      const c = await this.read()
      if (c == null) throw new Error(`stream ended before a newline (read ${JSON.stringify(line)})`)
      const i = c.indexOf(10)
      if (i < 0) {
        line += Buffer.from(c).toString()
        continue
      }
      line += Buffer.from(c.subarray(0, i)).toString()
      if (i + 1 < c.byteLength) {
        const rest = c.subarray(i + 1)
        this.chunks.unshift(rest)
        this.buffered += rest.byteLength
      }
      return line
    }
  }

  // readAll reads to the end and returns the byte count and SHA-256.
  async readAll () {
    const h = crypto.createHash('sha256')
    let bytes = 0
    for (;;) {
      const c = await this.read()
      if (c == null) return { bytes, sha256: h.digest('hex') }
      h.update(c)
      bytes += c.byteLength
    }
  }

  // outcome reads to the end and describes how the stream ended: "eof" or
  // the error's name, and how many bytes came before.
  async outcome () {
    let bytes = 0
    try {
      for (;;) {
        const c = await this.read()
        if (c == null) return { read: 'eof', bytes }
        bytes += c.byteLength
      }
    } catch (err) {
      return { read: errName(err), bytes }
    }
  }
}

// waitDrain waits until stream can take more data. It does not use
// stream.onDrain(): in @libp2p/utils 7.4.1 its promise is never replaced
// once resolved, so after a stream's first drain it no longer waits.
function waitDrain (stream) {
  return new Promise((resolve, reject) => {
    const done = (err) => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      if (err != null) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    const onClose = (evt) => done(evt.error ?? new Error('stream closed while waiting to send'))
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
  })
}

// send writes data on stream, waiting for room when the stream is full.
async function send (stream, data) {
  if (!stream.send(data)) await waitDrain(stream)
}

// sendRandom writes n random bytes in pieces of 256 KiB and returns their
// SHA-256. It does not half-close.
async function sendRandom (stream, n) {
  const h = crypto.createHash('sha256')
  const piece = 256 << 10
  while (n > 0) {
    const b = crypto.randomBytes(Math.min(n, piece))
    h.update(b)
    n -= b.byteLength
    await send(stream, b)
  }
  return h.digest('hex')
}

// trySend reports what a one-byte send does on stream: "ok" or the error.
function trySend (stream) {
  try {
    stream.send(new Uint8Array([1]))
    return 'ok'
  } catch (err) {
    return errName(err)
  }
}

// tryOpen reports what opening a stream on muxer does.
async function tryOpen (muxer) {
  try {
    const s = await muxer.createStream()
    s.abort(new Error('probe stream'))
    return 'ok'
  } catch (err) {
    return errName(err)
  }
}

// tryPing reports what a ping on muxer does, bounded by ms milliseconds.
async function tryPing (muxer, ms = 2000) {
  try {
    await muxer.ping({ signal: AbortSignal.timeout(ms) })
    return 'ok'
  } catch (err) {
    return errName(err)
  }
}

// sendGoAway sends GoAway(normal) without closing anything: the muxer
// refuses new inbound streams and opens none itself. The package has no
// public call for this (close() half-closes every stream first); this is
// its private YamuxMuxer.sendGoAway, which close() and abort() use.
function sendGoAway (muxer) {
  muxer.sendGoAway(0)
}

// closeSession is how a js-libp2p Connection closes: the muxer's close
// (FIN on every stream, waiting for each to be written, then GoAway
// (normal)), then the connection.
async function closeSession (muxer, conn) {
  await muxer.close()
  await conn.close()
}

// abortSession is how a js-libp2p Connection aborts on an error: the
// muxer's abort (RST on every stream, then GoAway), then the connection's
// (a TCP reset). The reset comes a moment later here, so that the frames
// before it are not discarded from the socket's send buffer.
function abortSession (muxer, conn) {
  const err = new Error('aborted by the test')
  muxer.abort(err)
  setTimeout(() => conn.abort(err), 10)
}

// streamEcho sends everything it reads back, and half-closes at the end.
async function streamEcho (stream, r) {
  for (;;) {
    const c = await r.read()
    if (c == null) break
    await send(stream, c)
  }
  await stream.close()
}

// ---- server mode ----

// serveStream runs the command on the first line of a stream the Go client
// opened. Each command answers "ready\n" (unless said otherwise) once it is
// set up, so that the Go side knows the stream is established. Commands
// that then reset the stream wait for a line from the Go side first: an RST
// discards data not yet read (spec.md §3.4), "ready" included.
async function serveStream (muxer, conn, stream) {
  const r = new Reader(stream)
  const cmd = (await r.readLine()).split(' ')
  const id = stream.streamId
  switch (cmd[0]) {
    case 'echo': // everything back, then FIN; no "ready"
      await streamEcho(stream, r)
      return
    case 'halfclose': { // N random bytes, FIN; then read to the end
      const sent = await sendRandom(stream, Number(cmd[1]))
      await stream.close()
      emit({ event: 'halfclose-sent', stream: id, bytes: Number(cmd[1]), sha256: sent })
      const got = await r.readAll()
      emit({ event: 'halfclose-received', stream: id, ...got })
      return
    }
    case 'reset': // "ready"; RST once "go" has come (so that "ready" was read)
      await send(stream, Buffer.from('ready\n'))
      await r.readLine()
      stream.abort(new Error('reset by the test'))
      emit({ event: 'reset', stream: id, send: trySend(stream) })
      return
    case 'watch': { // "ready", then report how the stream ends
      await send(stream, Buffer.from('ready\n'))
      const out = await r.outcome()
      emit({ event: 'watch', stream: id, ...out, send: trySend(stream), status: stream.status, open: await tryOpen(muxer), muxer: muxer.status })
      return
    }
    case 'goaway': // GoAway(normal), "ready", then echo
      sendGoAway(muxer)
      await send(stream, Buffer.from('ready\n'))
      emit({ event: 'goaway', stream: id, open: await tryOpen(muxer), ping: await tryPing(muxer) })
      await streamEcho(stream, r)
      return
    case 'close': // "ready"; close the session once "go" has come
      await send(stream, Buffer.from('ready\n'))
      await r.readLine()
      await closeSession(muxer, conn)
      emit({ event: 'closed', stream: id })
      return
    case 'abort': // "ready"; abort the session once "go" has come
      await send(stream, Buffer.from('ready\n'))
      await r.readLine()
      abortSession(muxer, conn)
      emit({ event: 'aborted', stream: id })
      return
    case 'flood': { // send until the stream fails; report how
      let bytes = 0
      try {
        for (;;) {
          const b = crypto.randomBytes(64 << 10)
          await send(stream, b)
          bytes += b.byteLength
        }
      } catch (err) {
        emit({ event: 'flood', stream: id, bytes, error: errName(err) })
      }
      return
    }
    case 'abandon-ping': // a ping given up on before its answer comes
      try {
        await muxer.ping({ signal: AbortSignal.abort() })
      } catch (err) {
        emit({ event: 'abandoned-ping', stream: id, error: errName(err) })
      }
      return
    case 'ping': { // pings: three one after another, three at once
      const rtts = []
      for (let i = 0; i < 3; i++) rtts.push(await muxer.ping({ signal: AbortSignal.timeout(5000) }))
      rtts.push(...await Promise.all([0, 1, 2].map(() => muxer.ping({ signal: AbortSignal.timeout(5000) }))))
      emit({ event: 'ping', stream: id, rtts })
      await send(stream, Buffer.from('ready\n'))
      await stream.close()
      return
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd)}`)
  }
}

async function server () {
  const srv = net.createServer({ noDelay: true })
  srv.listen(0, '127.0.0.1')
  await new Promise((resolve) => srv.once('listening', resolve))
  emit({ event: 'listening', port: srv.address().port })
  const socket = await new Promise((resolve) => srv.once('connection', resolve))
  srv.close()
  const { conn, muxer, started } = newMuxer(socket, 'inbound')
  muxer.addEventListener('stream', (evt) => {
    const stream = evt.detail
    started.then(() => serveStream(muxer, conn, stream)).catch((err) => {
      // A stream that fails after the session ended (closed or aborted by
      // a command, or by the Go side) is what the command reports on.
      if (muxer.status === 'open') {
        emit({ event: 'stream-error', stream: stream.streamId, error: errName(err), message: String(err?.message ?? err) })
      }
      stream.abort(err)
    })
  })
  await new Promise((resolve) => socket.once('close', resolve))
  emit({ event: 'connection-closed', muxer: muxer.status })
}

// ---- client mode ----

// establish opens a stream, writes hello and reads the Go server's
// "ready\n": the stream is then established on both ends.
async function establish (muxer, hello) {
  const stream = await muxer.createStream()
  const r = new Reader(stream)
  await send(stream, Buffer.from(hello + '\n'))
  const line = await r.readLine()
  if (line !== 'ready') throw new Error(`read ${JSON.stringify(line)}; want "ready"`)
  return { stream, r }
}

// echoStream writes n random bytes on a new stream and half-closes, while
// it reads the echo; it reports both checksums.
async function echoStream (muxer, n) {
  const stream = await muxer.createStream()
  const r = new Reader(stream)
  const echoed = r.readAll()
  const sent = await sendRandom(stream, n)
  await stream.close()
  const got = await echoed
  return { stream: stream.streamId, bytes: n, sha256: sent, echoBytes: got.bytes, echoSha256: got.sha256 }
}

const scenarios = {
  // streams COUNT SIZE: COUNT echoed streams of SIZE random bytes at once.
  async streams (muxer, conn, count, size) {
    await Promise.all(Array.from({ length: Number(count) }, async () => {
      emit({ event: 'echo', ...await echoStream(muxer, Number(size)) })
    }))
  },

  // burst N: N streams at once, each "x" and FIN, then read to the end.
  // Reports how many were echoed and, by error name, how the others ended.
  async burst (muxer, conn, n) {
    const results = await Promise.all(Array.from({ length: Number(n) }, async () => {
      const stream = await muxer.createStream()
      const r = new Reader(stream)
      try {
        await send(stream, Buffer.from('x'))
        await stream.close()
      } catch (err) {
        return errName(err)
      }
      const out = await r.outcome()
      return out.read === 'eof' && out.bytes === 1 ? 'echoed' : out.read
    }))
    const counts = {}
    for (const res of results) counts[res] = (counts[res] ?? 0) + 1
    emit({ event: 'burst', counts })
  },

  // halfclose N: N random bytes and FIN, then read the Go server's reply,
  // which it sends only after our FIN.
  async halfclose (muxer, conn, n) {
    const stream = await muxer.createStream()
    const r = new Reader(stream)
    const sent = await sendRandom(stream, Number(n))
    await stream.close()
    emit({ event: 'halfclose-sent', stream: stream.streamId, bytes: Number(n), sha256: sent })
    emit({ event: 'halfclose-received', stream: stream.streamId, ...await r.readAll() })
  },

  // ping: three pings one after another and three at once, answered by the
  // Go server while it pings us.
  async ping (muxer) {
    const rtts = []
    for (let i = 0; i < 3; i++) rtts.push(await muxer.ping({ signal: AbortSignal.timeout(5000) }))
    rtts.push(...await Promise.all([0, 1, 2].map(() => muxer.ping({ signal: AbortSignal.timeout(5000) }))))
    emit({ event: 'ping', rtts })
    const { r } = await establish(muxer, 'ping')
    emit({ event: 'pinged', ...await r.outcome() })
  },

  // watch: an established stream; report how it ends (the Go server resets
  // it, sends GoAway or closes the session). A muxer closed by the Go
  // server's GoAway leaves the connection open (closing it is the job of
  // its owner, a js-libp2p Connection); then wait, up to 10 s, for the Go
  // server to close it, so that it can look at what is left.
  async watch (muxer, conn) {
    const { stream, r } = await establish(muxer, 'watch')
    const out = await r.outcome()
    emit({ event: 'watch', stream: stream.streamId, ...out, send: trySend(stream), status: stream.status, open: await tryOpen(muxer), ping: await tryPing(muxer, 5000), muxer: muxer.status })
    if (muxer.status !== 'open' && conn.status === 'open') {
      await new Promise((resolve) => {
        conn.addEventListener('close', resolve, { once: true })
        setTimeout(resolve, 10000).unref()
      })
    }
  },

  // reset: an established stream, then our RST.
  async reset (muxer) {
    const { stream } = await establish(muxer, 'reset')
    stream.abort(new Error('reset by the test'))
    emit({ event: 'reset', stream: stream.streamId, send: trySend(stream) })
    const { r } = await establish(muxer, 'after-reset')
    emit({ event: 'after-reset', ...await r.outcome() })
  },

  // goaway: an established stream; our GoAway(normal); then the stream
  // still carries "after goaway" to the Go server and its reply back.
  async goaway (muxer) {
    const { stream, r } = await establish(muxer, 'goaway')
    sendGoAway(muxer)
    await send(stream, Buffer.from('after goaway\n'))
    const reply = await r.readLine()
    emit({ event: 'goaway', stream: stream.streamId, reply, open: await tryOpen(muxer), ping: await tryPing(muxer) })
    await stream.close()
    emit({ event: 'goaway-end', ...await r.outcome() })
  },

  // close: two established streams, then we close the session.
  async close (muxer, conn) {
    await establish(muxer, 'idle')
    await establish(muxer, 'close')
    await closeSession(muxer, conn)
    emit({ event: 'closed', muxer: muxer.status })
  },

  // abort: two established streams, then we abort the session (RST on
  // every stream, GoAway, connection reset); report before the reset and
  // wait for it.
  async abort (muxer, conn) {
    await establish(muxer, 'idle')
    await establish(muxer, 'abort')
    abortSession(muxer, conn)
    emit({ event: 'aborted', muxer: muxer.status })
    await new Promise((resolve) => conn.addEventListener('close', resolve, { once: true }))
  }
}

async function client (port, name, args) {
  const run = scenarios[name]
  if (run == null) throw new Error(`unknown scenario ${JSON.stringify(name)}`)
  const socket = net.connect({ host: '127.0.0.1', port: Number(port), noDelay: true })
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const { conn, muxer, started } = newMuxer(socket, 'outbound')
  muxer.addEventListener('stream', (evt) => {
    evt.detail.abort(new Error('the client accepts no streams'))
  })
  await started
  await run(muxer, conn, ...args)
  emit({ event: 'done' })
  if (!socket.destroyed) {
    const closed = new Promise((resolve) => socket.once('close', resolve))
    try {
      await muxer.close({ signal: AbortSignal.timeout(2000) })
      await conn.close({ signal: AbortSignal.timeout(2000) })
    } catch {
      conn.abort(new Error('the session did not close in time'))
    }
    await closed
  }
}

const [mode, ...rest] = process.argv.slice(2)
if (mode === 'server') {
  await server()
} else if (mode === 'client') {
  await client(rest[0], rest[1], rest.slice(2))
} else {
  throw new Error('usage: node peer.mjs server | client PORT SCENARIO [ARGS...]')
}
exit(0)
