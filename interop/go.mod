module github.com/d5da5f0f/yamux/interop

go 1.25.0

require (
	github.com/d5da5f0f/yamux v0.0.0
	github.com/hashicorp/yamux v0.1.2
	github.com/libp2p/go-yamux/v5 v5.1.0
	go.uber.org/goleak v1.3.0
)

require github.com/libp2p/go-buffer-pool v0.0.2 // indirect

replace github.com/d5da5f0f/yamux => ../
