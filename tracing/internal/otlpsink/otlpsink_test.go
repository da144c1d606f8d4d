package otlpsink

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSinkCountsExports sends one export over each protocol with the stock
// clients: the sink answers success and counts the request and its bytes.
func TestSinkCountsExports(t *testing.T) {
	ctx := context.Background()
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			s, err := Start(protocol)
			require.NoError(t, err)
			defer s.Close()
			var client otlptrace.Client
			if protocol == "grpc" {
				client = otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(s.Endpoint), otlptracegrpc.WithInsecure())
			} else {
				client = otlptracehttp.NewClient(otlptracehttp.WithEndpoint(strings.TrimPrefix(s.Endpoint, "http://")), otlptracehttp.WithInsecure())
			}
			exp, err := otlptrace.New(ctx, client)
			require.NoError(t, err)
			spans := tracetest.SpanStubs{{Name: "one"}, {Name: "two"}}.Snapshots()
			require.NoError(t, exp.ExportSpans(ctx, spans))
			require.NoError(t, exp.Shutdown(ctx))
			require.EqualValues(t, 1, s.Requests())
			require.Greater(t, s.Bytes(), int64(20), "two spans with names and ids")
		})
	}
}

func TestSinkRejectsUnknownProtocol(t *testing.T) {
	_, err := Start("http/json")
	require.ErrorContains(t, err, `"http/json"`)
}
