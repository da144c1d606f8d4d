package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tag(k string, v any) keyValue { return keyValue{Key: k, Value: v} }

func logOf(name string, keys ...string) spanLog {
	l := spanLog{Fields: []keyValue{tag("event", name)}}
	for _, k := range keys {
		l.Fields = append(l.Fields, tag(k, float64(1)))
	}
	return l
}

func journeyLog(typ string, extra ...keyValue) spanLog {
	l := logOf("journey."+typ, journeyKeys[1:]...)
	l.Fields = append(l.Fields, tag("event.type", typ))
	l.Fields = append(l.Fields, extra...)
	return l
}

// validTraces builds what a correct run looks like in Jaeger's JSON.
func validTraces() []jaegerTrace {
	api := jaegerSpan{TraceID: "t1", SpanID: "a", OperationName: "llm_request",
		Tags: []keyValue{tag("span.kind", "server"), tag("otel.scope.name", "vllm.api")}}
	for _, k := range apiAttrs {
		api.Tags = append(api.Tags, tag(k, float64(1)))
	}
	for _, e := range apiEvents {
		api.Logs = append(api.Logs, logOf(e, "event.ts.monotonic"))
	}
	core := jaegerSpan{TraceID: "t1", SpanID: "c", OperationName: "llm_core",
		References: []reference{{RefType: "CHILD_OF", TraceID: "t1", SpanID: "a"}},
		Tags:       []keyValue{tag("otel.scope.name", "vllm.scheduler")},
		Logs: []spanLog{journeyLog("QUEUED"), journeyLog("SCHEDULED", tag("schedule.kind", "FIRST")),
			journeyLog("FIRST_TOKEN"), journeyLog("FINISHED", tag("finish.status", "length"))}}
	var windows []jaegerTrace
	for i := range 2 {
		start := float64(i*10 + 1)
		w := jaegerSpan{TraceID: fmt.Sprint("w", i), SpanID: fmt.Sprint("w", i), OperationName: fmt.Sprintf("scheduler_steps_%d", i+1),
			Tags: []keyValue{tag("otel.scope.name", "vllm.scheduler.step"), tag("scheduler.span_sequence", float64(i+1)),
				tag("scheduler.step_range_start", start), tag("scheduler.step_range_end", start+9),
				tag("scheduler.closure_interval", float64(10))}}
		sum := logOf("step.BATCH_SUMMARY", append(summaryKeys[1:], deviceKeys...)...)
		sum.Fields = append(sum.Fields, tag("step.id", start))
		snap := logOf("step.REQUEST_SNAPSHOT", snapshotKeys[1:]...)
		snap.Fields = append(snap.Fields, tag("step.id", start))
		w.Logs = []spanLog{sum, snap}
		windows = append(windows, jaegerTrace{TraceID: w.TraceID, Spans: []jaegerSpan{w}})
	}
	return append([]jaegerTrace{{TraceID: "t1", Spans: []jaegerSpan{api, core}}}, windows...)
}

func TestCheckAcceptsAValidRun(t *testing.T) {
	sum, errs := check(validTraces(), expectations{requests: 1, interval: 10, steps: true})
	require.Empty(t, errs)
	assert.Equal(t, summary{requests: 1, cores: 1, windows: 2, summaries: 2, snapshots: 2}, sum)
}

func TestCheckFindsViolations(t *testing.T) {
	tests := []struct {
		name   string
		break_ func([]jaegerTrace)
		want   string
	}{
		{"missing api event", func(tr []jaegerTrace) { tr[0].Spans[0].Logs = tr[0].Spans[0].Logs[:3] }, "events"},
		{"core not a child", func(tr []jaegerTrace) { tr[0].Spans[1].References = nil }, "parent"},
		{"two first tokens", func(tr []jaegerTrace) {
			c := &tr[0].Spans[1]
			c.Logs = append(c.Logs[:3], append([]spanLog{journeyLog("FIRST_TOKEN")}, c.Logs[3:]...)...)
		}, "FIRST_TOKEN"},
		{"journey key missing", func(tr []jaegerTrace) { tr[0].Spans[1].Logs[0].Fields = tr[0].Spans[1].Logs[0].Fields[:3] }, "without"},
		{"summary without device time", func(tr []jaegerTrace) {
			l := &tr[1].Spans[0].Logs[0]
			var kept []keyValue
			for _, f := range l.Fields {
				if f.Key != "device.forward_us" {
					kept = append(kept, f)
				}
			}
			l.Fields = kept
		}, "without device.forward_us"},
		{"window too long", func(tr []jaegerTrace) { tr[1].Spans[0].Tags[3] = tag("scheduler.step_range_end", float64(30)) }, "range"},
		{"wrong scope", func(tr []jaegerTrace) { tr[0].Spans[0].Tags[1] = tag("otel.scope.name", "x") }, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := validTraces()
			tt.break_(tr)
			_, errs := check(tr, expectations{requests: 1, interval: 10, steps: true})
			require.NotEmpty(t, errs)
			assert.Contains(t, fmt.Sprint(errs), tt.want)
		})
	}
	_, errs := check(validTraces(), expectations{requests: 2, interval: 10, steps: true})
	assert.Contains(t, fmt.Sprint(errs), "want 2 llm_request")
	_, errs = check(validTraces(), expectations{requests: 1, interval: 10, steps: true, summaries: 3})
	assert.Contains(t, fmt.Sprint(errs), "2 step summaries in 2 windows, want at least 3")
	_, errs = check(validTraces(), expectations{requests: 1, interval: 10, steps: true, summaries: 2})
	assert.Empty(t, errs)
}
