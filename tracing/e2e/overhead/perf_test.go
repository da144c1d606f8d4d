package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// perfScript is `perf script -F pid,ip,sym` output of two servers, with
// stacks as vserve's look: a step hook, a metrics-only step, serving code,
// the gRPC upload, a kernel sample under the socket write, and a request
// metric recorded from llm_request's end (the metrics', not tracing's).
const perfScript = `13830 
	          3d0977 github.com/vserve/vserve/server.(*job).consume
	          3d0291 github.com/vserve/vserve/server.(*job).run

13830 
	          5a1b20 github.com/vserve/vserve/tracing.(*eventAttrs).int
	          5a1c00 github.com/vserve/vserve/tracing.(*stepTracer).writeHeldLocked
	          5a2000 github.com/vserve/vserve/tracing.(*stepTracer).stepTiming
	          5a3000 github.com/vserve/vserve/tracing.(*Telemetry).OnStep

13830 
	          6b0000 go.opentelemetry.io/otel/sdk/metric/internal/aggregate.(*cumulativeHistogram[go.shape.float64]).measure
	          6b1000 github.com/vserve/vserve/tracing.(*metrics).step
	          5a3000 github.com/vserve/vserve/tracing.(*Telemetry).OnStep

13836 
	ffffffff81a2b3c4 tcp_sendmsg_locked
	          7c0000 google.golang.org/grpc/internal/transport.(*bufWriter).flushKeepBuffer
	          7c1000 google.golang.org/grpc/internal/transport.(*loopyWriter).run

13836 
	          5a9000 github.com/vserve/vserve/tracing.(*directSpans).start
	          5aa000 github.com/vserve/vserve/tracing.(*spanStarter).startNamed
	          5ab000 github.com/vserve/vserve/tracing.httpTelemetry.Arrived

 13836 
	          3d0291 github.com/vserve/vserve/server.(*job).run

13836 
	          6b2000 go.opentelemetry.io/otel/sdk/metric.(*int64Inst).Record
	          6b3000 github.com/vserve/vserve/tracing.(*metrics).requestParamsN
	          5ac000 github.com/vserve/vserve/tracing.(*apiSpan).End
	          3d0977 github.com/vserve/vserve/server.(*Server).serveGeneration
`

func TestParsePerfScript(t *testing.T) {
	shares, err := parsePerfScript(strings.NewReader(perfScript))
	require.NoError(t, err)
	assert.Equal(t, map[int]profileShares{
		13830: {samples: 3, tracing: 1, metrics: 1},
		13836: {samples: 4, tracing: 2, metrics: 1},
	}, shares)
}

func TestParsePerfScriptRejectsAHeaderWithoutAPid(t *testing.T) {
	_, err := parsePerfScript(strings.NewReader("vserve 13830\n\t 1 main.main\n"))
	require.Error(t, err)
}

func TestTracingFrame(t *testing.T) {
	for frame, want := range map[string]bool{
		"github.com/vserve/vserve/tracing.(*coreState).end":                                      true,
		"github.com/vserve/vserve/tracing.(*spanCodec).Marshal":                                  true,
		"github.com/vserve/vserve/tracing.appendSpanStart":                                       true,
		"github.com/vserve/vserve/tracing.randomSpanID":                                          true,
		"go.opentelemetry.io/otel/propagation.TraceContext.Inject":                               true,
		"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc.(*client).UploadTraces": true,
		"github.com/vserve/vserve/tracing.(*metrics).requestEnded":                               false,
		"github.com/vserve/vserve/tracing.(*Telemetry).OnStep":                                   false, // calls both
		"go.opentelemetry.io/otel/sdk/metric.(*float64Inst).Record":                              false,
		"github.com/vserve/vserve/server.(*Server).streamCompletion":                             false,
		"github.com/vserve/vserve/tracing.(*metricsOnlySpan).End":                                false,
	} {
		assert.Equal(t, want, tracingFrame.MatchString(frame), frame)
	}
}
