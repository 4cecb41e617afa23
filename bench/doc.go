// Package bench compares this yamux with hashicorp/yamux, libp2p/go-yamux,
// xtaci/smux and raw TCP. It is its own module so that the library's go.mod
// never requires the other multiplexers.
package bench
