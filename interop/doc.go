// Package interop tests this yamux against hashicorp/yamux and
// libp2p/go-yamux over TCP loopback. It is its own module so that the
// library's go.mod never requires the peers.
package interop
