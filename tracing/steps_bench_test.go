package tracing

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkStepEventEncoding measures writing one sampled step's events as
// they are exported: a step.BATCH_SUMMARY with its device timing and one
// step.REQUEST_SNAPSHOT, encoded into the window's buffer. One op is one
// step.
func BenchmarkStepEventEncoding(b *testing.B) {
	p := &stepEvent{step: 1 << 20, timed: true, summary: stepSummary{
		startNS: 1 << 50, endNS: 1<<50 + 40_000, durationUS: 40, running: 32, waiting: 3,
		prefillReqs: 1, decodeReqs: 31, scheduledTokens: 543, prefillTokens: 512, decodeTok: 31,
		finished: 1, kvUsage: 0.42, kvTotal: 4096, kvFree: 2000, prepareUS: 120, forwardUS: 9000, sampleUS: 300,
	}}
	snap := &requestSnapshot{step: p.step, id: "cmpl-0123456789abcdef", decode: true, prompt: 512, computedBefore: 530,
		output: 18, scheduled: 1, blocksAllocated: 34, blocksCached: 16, cached: 256}
	buf := make([]byte, 0, 4096)
	sink := eventSink{export: &exportProcessor{}, buf: &buf}
	events := newEventBuilder(make([]attribute.KeyValue, 0, summaryAttrs))
	var span trace.Span = noop.Span{}
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		sink.addFrom(&events, span, EventBatchSummary, at, p)
		sink.addFrom(&events, span, EventRequestSnapshot, at, snap)
	}
	b.ReportMetric(float64(len(buf)), "bytes/step")
}
