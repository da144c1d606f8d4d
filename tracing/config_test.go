package tracing

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero value", func(c *Config) { *c = Config{} }, ""},
		{"journey rate high", func(c *Config) { c.JourneySampleRate = 1.5 }, "journey-tracing-sample-rate"},
		{"journey rate negative", func(c *Config) { c.JourneySampleRate = -0.1 }, "journey-tracing-sample-rate"},
		{"step rate", func(c *Config) { c.StepSampleRate = 2 }, "step-tracing-sample-rate"},
		{"rich rate", func(c *Config) { c.StepRichSubsampleRate = -1 }, "rich-subsample-rate"},
		{"closure too small", func(c *Config) {
			c.OTLPTracesEndpoint, c.StepTracingEnabled, c.StepClosureInterval = "localhost:4317", true, 9
		}, "closure-interval"},
		{"closure too large", func(c *Config) {
			c.OTLPTracesEndpoint, c.StepTracingEnabled, c.StepClosureInterval = "localhost:4317", true, 10001
		}, "closure-interval"},
		{"closure checked without step tracing too", func(c *Config) { c.StepClosureInterval = 10001 }, "closure-interval"},
		{"closure bounds ok", func(c *Config) {
			c.OTLPTracesEndpoint, c.StepTracingEnabled, c.StepClosureInterval = "localhost:4317", true, 10
		}, ""},
		{"bad protocol", func(c *Config) { c.Protocol = "http/json" }, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{"journey without endpoint", func(c *Config) { c.EnableJourneyTracing = true }, "otlp-traces-endpoint"},
		{"steps without endpoint", func(c *Config) { c.StepTracingEnabled = true }, "otlp-traces-endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestProtocolFromEnvironment(t *testing.T) {
	tests := []struct {
		env     string
		wantErr bool
	}{{"", false}, {"grpc", false}, {"http/protobuf", false}, {"http/json", true}, {"GRPC", true}}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", tt.env)
			c := DefaultConfig()
			c.OTLPTracesEndpoint = "127.0.0.1:4317"
			tel, err := Setup(t.Context(), c)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, tel.Shutdown(t.Context()))
		})
	}
}

func TestServiceName(t *testing.T) {
	c := Config{}
	t.Setenv("OTEL_SERVICE_NAME", "")
	assert.Equal(t, "vserve", c.serviceName())
	t.Setenv("OTEL_SERVICE_NAME", "edge")
	assert.Equal(t, "edge", c.serviceName())
	c.ServiceName = "explicit"
	assert.Equal(t, "explicit", c.serviceName())
}

func TestRegisterFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("vserve", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"--otlp-traces-endpoint", "localhost:4317", "--enable-journey-tracing",
		"--journey-tracing-sample-rate", "0.5", "--step-tracing-enabled", "--step-tracing-sample-rate", "1",
		"--step-tracing-rich-subsample-rate", "0.1", "--step-tracing-closure-interval", "20"}))
	assert.Equal(t, Config{OTLPTracesEndpoint: "localhost:4317", EnableJourneyTracing: true, JourneySampleRate: 0.5,
		StepTracingEnabled: true, StepSampleRate: 1, StepRichSubsampleRate: 0.1, StepClosureInterval: 20}, c)
	d := DefaultConfig()
	d.RegisterFlags(flag.NewFlagSet("x", flag.ContinueOnError))
	assert.Equal(t, 1.0, d.JourneySampleRate)
	assert.Equal(t, 0.01, d.StepSampleRate)
	assert.Equal(t, 0.001, d.StepRichSubsampleRate)
	assert.Equal(t, 100, d.StepClosureInterval)
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    otlpTarget
		wantErr bool
	}{
		{"localhost:4317", otlpTarget{hostPort: "localhost:4317", insecure: true}, false},
		{"http://127.0.0.1:4318", otlpTarget{hostPort: "127.0.0.1:4318", insecure: true}, false},
		{"http://127.0.0.1:4318/v1/traces", otlpTarget{hostPort: "127.0.0.1:4318", insecure: true, urlPath: "/v1/traces"}, false},
		{"https://collector.example:443/", otlpTarget{hostPort: "collector.example:443"}, false},
		{"ftp://x:1", otlpTarget{}, true},
		{"http://", otlpTarget{}, true},
	}
	for _, tt := range tests {
		got, err := parseEndpoint(tt.in)
		if tt.wantErr {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"localhost:4317", "http://a:1/x", "https://b:2", "://", "http://[::1]:4317"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseEndpoint(s)
		if err != nil {
			return
		}
		if got.hostPort == "" && s != "" {
			t.Fatalf("%q parsed without a host", s)
		}
	})
}
