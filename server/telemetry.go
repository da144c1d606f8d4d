package server

import (
	"net/http"
	"time"

	"github.com/vserve/vserve/engine"
)

// Telemetry is the server-side tracing hook. The handlers call Arrived on
// receipt of every API request, before reading or parsing the body, and
// drive the returned RequestSpan through the request's life. The tracing
// package implements it (journey tracing's llm_request span); NopTelemetry
// is the default.
type Telemetry interface {
	// Arrived is api.ARRIVED. r carries the incoming headers (traceparent,
	// tracestate); route is the matched route, e.g. "/v1/completions".
	Arrived(r *http.Request, route string) RequestSpan
}

// RequestInfo describes a parsed request; fields the client left unset are
// nil.
type RequestInfo struct {
	RequestID    string // server-generated, unique
	Model        string
	PromptTokens int // summed over prompts
	Temperature  *float64
	TopP         *float64
	MaxTokens    *int
	N            *int
}

// NumChoices is n, the choices per prompt: 1 when the client left n unset.
func (i RequestInfo) NumChoices() int {
	if i.N == nil {
		return 1
	}
	return *i.N
}

// Outcome is what a successful request produced.
type Outcome struct {
	CompletionTokens int
	// Times are the engine timestamps of the request (of its first
	// sub-request when it had several prompts or n > 1).
	Times engine.RequestTimes
}

// Abort reasons passed to RequestSpan.Aborted.
const (
	ReasonClientDisconnect = "client_disconnect"
	ReasonValidation       = "validation_error"
	ReasonGeneration       = "generation_error"
	ReasonTimeout          = "timeout"
	ReasonOverloaded       = "overloaded"
	ReasonException        = "exception"
	ReasonShutdown         = "shutdown"
	ReasonModelLoading     = "model_loading" // 503 before the model is ready
)

// RequestSpan follows one API request. Its methods are called from the
// request's handler goroutine only. Departed and Aborted are terminal: the
// first terminal call wins and later calls (of either) are ignored. End is
// deferred by the handler and finalises exactly once: after neither terminal
// call it records an abort with reason "exception" (a panic).
type RequestSpan interface {
	// Parsed records the request attributes once the body is parsed.
	Parsed(info RequestInfo)
	// TraceHeaders returns the headers to hand to the engine with every
	// sub-request (traceparent, tracestate, x-vllm-journey-sampled), or nil;
	// the map is shared and read-only.
	TraceHeaders() map[string]string
	// HandoffToCore is api.HANDOFF_TO_CORE, called once all sub-requests
	// were accepted, at the time the first was handed over (so that it
	// precedes the engine's events of every sub-request, the first token
	// included); zero means now.
	HandoffToCore(at time.Time)
	// FirstResponseFromCore is api.FIRST_RESPONSE_FROM_CORE, called once, at
	// the engine's first output token time (streaming or not).
	FirstResponseFromCore(at time.Time)
	// Departed is api.DEPARTED: success, before the last bytes are written.
	Departed(o Outcome)
	// Aborted is api.ABORTED with a reason (see the Reason constants).
	Aborted(reason string, err error)
	// End finalises the span (idempotent).
	End()
}

// NopTelemetry records nothing.
type NopTelemetry struct{}

// Arrived returns a span that records nothing.
func (NopTelemetry) Arrived(*http.Request, string) RequestSpan { return nopSpan{} }

type nopSpan struct{}

func (nopSpan) Parsed(RequestInfo)              {}
func (nopSpan) TraceHeaders() map[string]string { return nil }
func (nopSpan) HandoffToCore(time.Time)         {}
func (nopSpan) FirstResponseFromCore(time.Time) {}
func (nopSpan) Departed(Outcome)                {}
func (nopSpan) Aborted(string, error)           {}
func (nopSpan) End()                            {}
