module github.com/d5da5f0f/yamux/examples

go 1.25.0

require (
	github.com/d5da5f0f/yamux v0.0.0
	github.com/hashicorp/go-msgpack/v2 v2.1.5
	github.com/hashicorp/yamux v0.1.2
	go.uber.org/goleak v1.3.0
	google.golang.org/grpc v1.84.0
)

require (
	golang.org/x/net v0.58.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/text v0.41.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260706201446-f0a921348800 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

replace github.com/d5da5f0f/yamux => ../
