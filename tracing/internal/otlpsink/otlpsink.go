package otlpsink

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"google.golang.org/grpc"
)

// Sink receives OTLP traces and discards them.
type Sink struct {
	// Endpoint is the --otlp-traces-endpoint for the sink: host:port for
	// gRPC, http://host:port for http/protobuf.
	Endpoint string

	ln       net.Listener
	srv      *http.Server
	grpc     *grpc.Server
	requests atomic.Int64
	bytes    atomic.Int64
}

// Start listens on a free loopback port for protocol "grpc" or
// "http/protobuf".
func Start(protocol string) (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln}
	switch protocol {
	case "http/protobuf":
		s.Endpoint = "http://" + ln.Addr().String()
		s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP)}
		go func() { _ = s.srv.Serve(ln) }()
	case "grpc":
		s.Endpoint = ln.Addr().String()
		s.grpc = grpc.NewServer(grpc.ForceServerCodec(countingCodec{}))
		s.grpc.RegisterService(&traceService, s)
		go func() { _ = s.grpc.Serve(ln) }()
	default:
		_ = ln.Close()
		return nil, fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", protocol)
	}
	return s, nil
}

// Requests is the number of export requests received.
func (s *Sink) Requests() int64 { return s.requests.Load() }

// Bytes is the size of the export requests received.
func (s *Sink) Bytes() int64 { return s.bytes.Load() }

// Close stops the sink.
func (s *Sink) Close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
	if s.grpc != nil {
		s.grpc.Stop()
	}
	_ = s.ln.Close()
}

func (s *Sink) serveHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	s.requests.Add(1)
	s.bytes.Add(n)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
}

// traceService is the collector's TraceService; with countingCodec it
// counts the bytes of each request instead of decoding them and answers an
// empty ExportTraceServiceResponse.
var traceService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var n int
			if err := dec(&n); err != nil {
				return nil, err
			}
			s := srv.(*Sink)
			s.requests.Add(1)
			s.bytes.Add(int64(n))
			return &n, nil
		},
	}},
}

// countingCodec replaces the proto codec of the sink's gRPC server.
type countingCodec struct{}

func (countingCodec) Marshal(any) ([]byte, error) { return nil, nil } // an empty message
func (countingCodec) Unmarshal(data []byte, v any) error {
	*v.(*int) = len(data)
	return nil
}
func (countingCodec) Name() string { return "proto" }
