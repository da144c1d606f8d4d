package tracing

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Defaults of spec/observability.md.
const (
	DefaultJourneySampleRate     = 1.0
	DefaultStepSampleRate        = 0.01
	DefaultStepRichSubsampleRate = 0.001
	DefaultStepClosureInterval   = 100
	MinStepClosureInterval       = 10
	MaxStepClosureInterval       = 10000
	// DefaultMaxEventsPerSpan raises the SDK's per-span event limit (128 by
	// default); step windows close before reaching it.
	DefaultMaxEventsPerSpan = 4096
	// DefaultMaxExportQueue bounds the spans waiting for export; beyond it
	// spans are dropped, never waited for.
	DefaultMaxExportQueue = 4096
)

// Config selects what is traced and where it goes. The zero value traces
// nothing and still serves metrics.
type Config struct {
	// OTLPTracesEndpoint is --otlp-traces-endpoint (host:port or URL). Empty
	// disables tracing unless SpanProcessors are given.
	OTLPTracesEndpoint string
	// Protocol is "grpc" (default) or "http/protobuf"; empty reads
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.
	Protocol string
	// ServiceName defaults to OTEL_SERVICE_NAME, then "vserve".
	ServiceName string

	EnableJourneyTracing     bool          // --enable-journey-tracing
	JourneySampleRate        float64       // --journey-tracing-sample-rate
	StepTracingEnabled       bool          // --step-tracing-enabled
	StepSampleRate           float64       // --step-tracing-sample-rate
	StepRichSubsampleRate    float64       // --step-tracing-rich-subsample-rate
	StepClosureInterval      int           // --step-tracing-closure-interval
	MaxEventsPerSpan         int           // 0: DefaultMaxEventsPerSpan
	MaxExportQueue           int           // 0: DefaultMaxExportQueue
	ExportTimeout            time.Duration // one OTLP export at most (0: 10s)
	ModelName                string        // metric label model_name
	EngineID                 string        // metric label engine (default "0")
	MaxModelLen              int           // top of the token-count buckets (default 8192)
	Logger                   *slog.Logger
	SpanProcessors           []sdktrace.SpanProcessor // tests: replace the OTLP exporter
	JourneySampler           RequestSampler           // nil: NewRateSampler(JourneySampleRate)
	StepSampler, RichSampler StepSampler              // nil: hash samplers with random seeds

	stockTransform bool // export through otlptrace.Exporter's own span transform (benchmarks compare)
	sdkSpans       bool // make the journey spans through the SDK even where a server makes them directly (directSpans; tests compare)
}

// DefaultConfig returns the flag defaults.
func DefaultConfig() Config {
	return Config{
		JourneySampleRate:     DefaultJourneySampleRate,
		StepSampleRate:        DefaultStepSampleRate,
		StepRichSubsampleRate: DefaultStepRichSubsampleRate,
		StepClosureInterval:   DefaultStepClosureInterval,
	}
}

// RegisterFlags binds the tracing flags with vLLM's names to fs, with the
// defaults of DefaultConfig already in c (call c := DefaultConfig() first).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OTLPTracesEndpoint, "otlp-traces-endpoint", c.OTLPTracesEndpoint, "OTLP collector for traces (host:port); protocol from OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (grpc|http/protobuf)")
	fs.BoolVar(&c.EnableJourneyTracing, "enable-journey-tracing", c.EnableJourneyTracing, "trace each request's journey (llm_request + llm_core spans with events)")
	fs.Float64Var(&c.JourneySampleRate, "journey-tracing-sample-rate", c.JourneySampleRate, "fraction of requests journey-traced, in [0,1]")
	fs.BoolVar(&c.StepTracingEnabled, "step-tracing-enabled", c.StepTracingEnabled, "trace scheduler steps (scheduler_steps_<k> spans)")
	fs.Float64Var(&c.StepSampleRate, "step-tracing-sample-rate", c.StepSampleRate, "fraction of steps with a step.BATCH_SUMMARY event, in [0,1]")
	fs.Float64Var(&c.StepRichSubsampleRate, "step-tracing-rich-subsample-rate", c.StepRichSubsampleRate, "fraction of sampled steps that also get step.REQUEST_SNAPSHOT events, in [0,1]")
	fs.IntVar(&c.StepClosureInterval, "step-tracing-closure-interval", c.StepClosureInterval, "steps per scheduler_steps span window (10..10000)")
}

// protocol resolves the OTLP protocol from the config and the environment.
func (c *Config) protocol() string {
	if c.Protocol != "" {
		return c.Protocol
	}
	if p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" {
		return p
	}
	return ProtocolGRPC
}

// serviceName resolves service.name.
func (c *Config) serviceName() string {
	if c.ServiceName != "" {
		return c.ServiceName
	}
	if s := os.Getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return DefaultServiceName
}

// tracingOn reports whether spans go anywhere.
func (c *Config) tracingOn() bool {
	return c.OTLPTracesEndpoint != "" || len(c.SpanProcessors) > 0
}

// Validate checks the flag values; every error is a startup error.
func (c *Config) Validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("--%s must be in [0,1], got %v", name, v))
		}
	}
	rate("journey-tracing-sample-rate", c.JourneySampleRate)
	rate("step-tracing-sample-rate", c.StepSampleRate)
	rate("step-tracing-rich-subsample-rate", c.StepRichSubsampleRate)
	// Checked like the rates whether or not step tracing is on; the zero
	// value (a library caller's Config{} without step tracing) is unset.
	if (c.StepTracingEnabled || c.StepClosureInterval != 0) &&
		(c.StepClosureInterval < MinStepClosureInterval || c.StepClosureInterval > MaxStepClosureInterval) {
		errs = append(errs, fmt.Errorf("--step-tracing-closure-interval must be in [%d,%d], got %d",
			MinStepClosureInterval, MaxStepClosureInterval, c.StepClosureInterval))
	}
	if p := c.protocol(); p != ProtocolGRPC && p != ProtocolHTTPProtobuf {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be %q or %q, got %q",
			ProtocolGRPC, ProtocolHTTPProtobuf, p))
	}
	if (c.EnableJourneyTracing || c.StepTracingEnabled) && !c.tracingOn() {
		errs = append(errs, errors.New("--enable-journey-tracing and --step-tracing-enabled need --otlp-traces-endpoint"))
	}
	if c.MaxEventsPerSpan < 0 || c.MaxExportQueue < 0 || c.MaxModelLen < 0 {
		errs = append(errs, errors.New("negative limit in tracing config"))
	}
	return errors.Join(errs...)
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.MaxEventsPerSpan == 0 {
		d.MaxEventsPerSpan = DefaultMaxEventsPerSpan
	}
	if d.MaxExportQueue == 0 {
		d.MaxExportQueue = DefaultMaxExportQueue
	}
	if d.ExportTimeout == 0 {
		d.ExportTimeout = defaultExportTimeout
	}
	if d.EngineID == "" {
		d.EngineID = "0"
	}
	if d.MaxModelLen == 0 {
		d.MaxModelLen = 8192
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return d
}
