module github.com/d5da5f0f/yamux/examples

go 1.25.0

require (
	github.com/d5da5f0f/yamux v0.0.0
	github.com/hashicorp/go-msgpack/v2 v2.1.5
	go.uber.org/goleak v1.3.0
)

replace github.com/d5da5f0f/yamux => ../
