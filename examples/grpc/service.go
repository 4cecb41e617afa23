package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/grpc"
)

// The service, written by hand instead of generated from a .proto file:
//
//	service Echo {
//	  rpc Echo(bytes) returns (bytes);                 // the request back
//	  rpc Count(bytes) returns (stream bytes);         // "n": messages "0".."n-1"
//	  rpc Chat(stream bytes) returns (stream bytes);   // each message back
//	}
const (
	serviceName = "yamux.example.Echo"
	echoMethod  = "/" + serviceName + "/Echo"
	countMethod = "/" + serviceName + "/Count"
	chatMethod  = "/" + serviceName + "/Chat"

	maxCount = 1 << 20 // the most messages one Count call may ask for
)

// echoService is the handler type the service description names; the
// handlers below call it.
type echoService interface {
	echo(req []byte) []byte
}

type echoServer struct{}

func (echoServer) echo(req []byte) []byte { return req }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*echoService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req []byte
			if err := dec(&req); err != nil {
				return nil, err
			}
			resp := srv.(echoService).echo(req)
			return &resp, nil
		},
	}},
	Streams: []grpc.StreamDesc{
		{StreamName: "Count", ServerStreams: true, Handler: serveCount},
		{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: serveChat},
	},
}

func serveCount(_ any, ss grpc.ServerStream) error {
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	n, err := strconv.Atoi(string(req))
	if err != nil || n < 0 || n > maxCount {
		return fmt.Errorf("Count: bad request %q", req)
	}
	for i := range n {
		msg := []byte(strconv.Itoa(i))
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
	}
	return nil
}

func serveChat(srv any, ss grpc.ServerStream) error {
	for {
		var msg []byte
		err := ss.RecvMsg(&msg)
		if err == io.EOF {
			return nil // the client closed its side; ends the call with OK
		}
		if err != nil {
			return err
		}
		resp := srv.(echoService).echo(msg)
		if err := ss.SendMsg(&resp); err != nil {
			return err
		}
	}
}

// newServer returns a gRPC server with the service registered and the raw
// codec forced, so that no protobuf is involved.
func newServer() *grpc.Server {
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&serviceDesc, echoServer{})
	return srv
}

// rawCodec carries messages as raw bytes: it marshals a *[]byte (or a
// []byte) as itself and unmarshals into a *[]byte. It implements
// grpc/encoding.Codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case []byte:
		return m, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	// gRPC may reuse data after Unmarshal returns.
	*m = append((*m)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }
