// Package interop tests this yamux against three other implementations over
// TCP loopback: hashicorp/yamux and libp2p/go-yamux in this process, and
// js-libp2p's @chainsafe/libp2p-yamux in a Node child process. It is its
// own module so that the library's go.mod never requires the peers.
//
// The Go peers: every scenario is written once against a small adapter
// (mux_test.go) and runs over four pairings: our client with each peer's
// server, and each peer's client with our server. What each peer does
// differently (GoAway, RST, a session that ends under a Read) is recorded
// on its adapter, in hashicorp_test.go and libp2p_test.go.
//
// The JS peer (js/peer.mjs, driven by jspeer_test.go) is an echo server
// with per-stream commands, or a client that runs a named scenario and
// reports what it saw as JSON lines; js_test.go and js_control_test.go run
// each scenario both ways (our client against its server, its client
// against our server). The tests need Node.js 20 or newer and npm in PATH,
// and fail without them; the first of them installs the pinned npm packages
// with npm ci into js/node_modules when that is missing or stale. What it
// does differently is recorded in jspeer_test.go and spec.md §12.
//
// Tests that once showed an interop bug of the library and now guard its
// fix are in regress_test.go and run with the others. resume_test.go
// checks that the resumption layer (spec.md §13) and hashicorp/yamux,
// which does not speak it, fail at once against each other.
package interop
