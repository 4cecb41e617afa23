module github.com/d5da5f0f/yamux

go 1.25.0

require (
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.58.0
)

require golang.org/x/sync v0.20.0
