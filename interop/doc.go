// Package interop tests this yamux against hashicorp/yamux and
// libp2p/go-yamux over TCP loopback. It is its own module so that the
// library's go.mod never requires the peers.
//
// Every scenario is written once against a small adapter (mux_test.go) and
// runs over four pairings: our client with each peer's server, and each
// peer's client with our server. What each peer does differently (GoAway,
// RST, a session that ends under a Read) is recorded on its adapter, in
// hashicorp_test.go and libp2p_test.go.
//
// Tests that show a library bug and fail until it is fixed are in
// bugs_test.go behind the interopbugs build tag:
//
//	go test -race -tags interopbugs -run Bug ./interop/...
package interop
