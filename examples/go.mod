module github.com/d5da5f0f/yamux/examples

go 1.25.0

require github.com/d5da5f0f/yamux v0.0.0

replace github.com/d5da5f0f/yamux => ../
