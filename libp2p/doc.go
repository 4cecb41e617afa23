// Package libp2p plugs the yamux library github.com/d5da5f0f/yamux into
// go-libp2p as its stream multiplexer for "/yamux/1.0.0", in place of
// libp2p/go-yamux, with which it interoperates on the wire. Its name is
// the same as go-libp2p's root package, so import it under another:
//
//	import yamuxlibp2p "github.com/d5da5f0f/yamux/libp2p"
//
//	h, err := libp2p.New(libp2p.Muxer(yamuxlibp2p.ID, yamuxlibp2p.DefaultTransport))
//
// [Transport] implements go-libp2p's network.Multiplexer. Each connection is
// a yamux.Session; its receive windows are reserved through the
// network.PeerScope go-libp2p passes in (a span of it per connection), so
// go-libp2p's resource manager bounds them. Stream resets carry their
// error code in the RST frame, and CloseWithError its code in the final
// GoAway, as libp2p/go-yamux does; errors match network.ErrReset and are
// *network.StreamError or *network.ConnError where the peer sent a code.
package libp2p
