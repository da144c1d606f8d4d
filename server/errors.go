package server

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// APIError is an error with an HTTP status and an OpenAI error body.
type APIError struct {
	Status  int
	Message string
	Type    string // invalid_request_error, not_found_error, ...
	Param   string
	Code    string
	// RetryAfter, when > 0, is sent as the Retry-After header (seconds).
	RetryAfter int
	// Reason is the telemetry abort reason.
	Reason string
}

func (e *APIError) Error() string { return e.Message }

type errorBody struct {
	Error errorFields `json:"error"`
}

type errorFields struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    any     `json:"code"`
}

func (e *APIError) body() errorBody {
	b := errorBody{Error: errorFields{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		p := e.Param
		b.Error.Param = &p
	}
	if e.Code != "" {
		b.Error.Code = e.Code
	} else {
		b.Error.Code = e.Status
	}
	return b
}

func badRequest(param, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param,
		Message: fmt.Sprintf(format, args...), Reason: ReasonValidation}
}

func notFound(param, msg string) *APIError {
	return &APIError{Status: http.StatusNotFound, Type: "not_found_error", Param: param, Code: "model_not_found",
		Message: msg, Reason: ReasonValidation}
}

func serverError(format string, args ...any) *APIError {
	return &APIError{Status: http.StatusInternalServerError, Type: "internal_server_error",
		Message: fmt.Sprintf(format, args...), Reason: ReasonGeneration}
}

// unavailable is a 503 with Retry-After; reason is ReasonShutdown or
// ReasonModelLoading.
func unavailable(reason, msg string) *APIError {
	return &APIError{Status: http.StatusServiceUnavailable, Type: "service_unavailable_error", Message: msg,
		Reason: reason, RetryAfter: 1}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *APIError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	writeJSON(w, e.Status, e.body())
}
