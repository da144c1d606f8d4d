// Package otlpsink is an OTLP trace receiver for benchmarks: it accepts
// gRPC and http/protobuf export requests on loopback, counts them and their
// bytes, and discards them without decoding, so that the cost measured on
// the sending side is not mixed with a collector's.
package otlpsink
