package tracing_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/vserve/vserve/tracing"
)

// Example shows the wiring of cmd/vserve: hooks for the engine and the
// server, and /metrics. With no OTLP endpoint only metrics are recorded.
func Example() {
	cfg := tracing.DefaultConfig()
	cfg.ModelName = "stories260K"
	tel, err := tracing.Setup(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	defer tel.Shutdown(context.Background())

	hooks := tel.EngineHooks() // engine.Config.Hooks
	_ = tel.HTTP()             // server telemetry
	fmt.Println(hooks.Observer != nil, hooks.OnStep != nil, hooks.OnRequestStart != nil, hooks.OnRequestEnd != nil)

	rr := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	fmt.Println(rr.Code, strings.Contains(rr.Body.String(), "vllm:"))
	// Output:
	// true true true true
	// 200 true
}

// ExampleNewHashStepSampler: the same seed gives the same steps.
func ExampleNewHashStepSampler() {
	a := tracing.NewHashStepSampler(0.5, 42)
	b := tracing.NewHashStepSampler(0.5, 42)
	same := true
	for step := range uint64(1000) {
		same = same && a.SampleStep(step) == b.SampleStep(step)
	}
	fmt.Println(same)
	// Output: true
}
