package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/scheduler"
)

// stalledCollector accepts connections and never answers.
type stalledCollector struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  sync.WaitGroup
}

func newStalledCollector(t *testing.T) *stalledCollector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &stalledCollector{ln: ln}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.done.Add(1)
			go func() { defer s.done.Done(); _, _ = io.Copy(io.Discard, c) }() // read, never write
		}
	}()
	return s
}

func (s *stalledCollector) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.done.Wait()
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestCollectorDownOrStalledNeverBlocks serves many fully traced requests
// (journey and step tracing at rate 1) against a collector that is down or
// never answers, with a small export queue. Were any hook to wait for the
// collector, the test would hang instead of finishing.
func TestCollectorDownOrStalledNeverBlocks(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		for _, mode := range []string{"down", "stalled"} {
			t.Run(proto+"/"+mode, func(t *testing.T) {
				endpoint := closedPort(t)
				var stalled *stalledCollector
				if mode == "stalled" {
					stalled = newStalledCollector(t)
					endpoint = stalled.ln.Addr().String()
				}
				c := DefaultConfig()
				c.OTLPTracesEndpoint = endpoint
				c.Protocol = proto
				c.EnableJourneyTracing = true
				c.StepTracingEnabled = true
				c.StepSampleRate, c.StepRichSubsampleRate, c.StepClosureInterval = 1, 1, 10
				c.MaxExportQueue = 16
				c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				c.ExportTimeout = 100 * time.Millisecond // lets the exporter's goroutines end soon after the test
				tel, err := Setup(t.Context(), c)
				require.NoError(t, err)
				h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
				for i := range 300 {
					f := h.newFlow(fmt.Sprint(i), 4, 2, nil)
					out, v := batch(uint64(i + 1))
					h.obs.StepBuilt(out, v)
					f.schedule(uint64(i+1), false, 4)
					f.token(uint64(i + 1))
					f.complete(uint64(i+1), scheduler.FinishStop, 1)
				}
				h.requireNoState()
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				_ = tel.Shutdown(ctx) // may report the undelivered spans; must return
				if stalled != nil {
					stalled.close()
				}
			})
		}
	}
}

func TestExportErrorsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	h := &rateLimitedErrors{log: slog.New(slog.NewTextHandler(&buf, nil)), interval: time.Hour}
	for range 100 {
		h.Handle(errors.New("connection refused"))
	}
	require.Equal(t, 1, strings.Count(buf.String(), "exporting spans failed"))
	h.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	h.Handle(errors.New("connection refused"))
	require.Equal(t, 2, strings.Count(buf.String(), "exporting spans failed"))
	require.Contains(t, buf.String(), "suppressed_since_last=99")
}

// TestExportStateOnMetrics: with a collector that never answers, /metrics
// shows, under the OpenTelemetry SDK's own metric names, the spans the
// queue took, those it dropped (error_type queue_full) and its size and
// capacity, for either protocol.
func TestExportStateOnMetrics(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		t.Run(proto, func(t *testing.T) {
			stalled := newStalledCollector(t)
			c := DefaultConfig()
			c.ModelName = "stories260K"
			c.OTLPTracesEndpoint = stalled.ln.Addr().String()
			c.Protocol = proto
			c.EnableJourneyTracing = true
			c.MaxExportQueue = 16 // one batch: its upload hangs, and the queue stays full
			c.ExportTimeout = time.Hour
			c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			tel, err := Setup(t.Context(), c)
			require.NoError(t, err)
			h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
			for i := range 100 { // two spans each
				f := h.newFlow(fmt.Sprint(i), 4, 1, nil)
				f.schedule(1, false, 4)
				f.token(1)
				f.complete(1, scheduler.FinishStop, 1)
			}
			fams := scrape(t, tel)
			exporter := "otlp_grpc_span_exporter"
			if proto == ProtocolHTTPProtobuf {
				exporter = "otlp_http_span_exporter"
			}
			proc := map[string]string{"otel_component_type": "batching_span_processor",
				"otel_component_name": "batching_span_processor/0", "model_name": "stories260K", "engine": "0"}
			full := map[string]string{"error_type": "queue_full"}
			maps.Copy(full, proc)
			require.Equal(t, []series{{full, 184}, {proc, 16}}, seriesOf(t, fams, "otel_sdk_processor_span_processed_total", dto.MetricType_COUNTER))
			require.Equal(t, []series{{proc, 16}}, seriesOf(t, fams, "otel_sdk_processor_span_queue_size", dto.MetricType_GAUGE))
			require.Equal(t, []series{{proc, 16}}, seriesOf(t, fams, "otel_sdk_processor_span_queue_capacity", dto.MetricType_GAUGE))
			require.Equal(t, []series{{map[string]string{"otel_component_type": exporter, "otel_component_name": exporter + "/0",
				"model_name": "stories260K", "engine": "0"}, 0}}, seriesOf(t, fams, "otel_sdk_exporter_span_exported_total", dto.MetricType_COUNTER))
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			_ = tel.Shutdown(ctx) // gives up on the hanging upload
			stalled.close()
		})
	}
}

// series is one sample of a scraped family: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// seriesOf returns the samples of family name, which must have type typ,
// ordered by their labels' text.
func seriesOf(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) []series {
	t.Helper()
	f := fams[name]
	require.NotNil(t, f, "family %s", name)
	require.Equal(t, typ, f.GetType(), "type of %s", name)
	var out []series
	for _, m := range f.GetMetric() {
		s := series{labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		switch typ {
		case dto.MetricType_COUNTER:
			s.value = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			s.value = m.GetGauge().GetValue()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b series) int { return strings.Compare(fmt.Sprint(a.labels), fmt.Sprint(b.labels)) })
	return out
}
