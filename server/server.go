package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/vserve/vserve/engine"
)

// Options configure the HTTP server. Zero values select the defaults.
type Options struct {
	// APIKey, when set, is required as "Authorization: Bearer <key>" on
	// every route except /health, /version and /metrics.
	APIKey string
	// MaxBodyBytes limits request bodies (default 8 MiB); past it: 413.
	MaxBodyBytes int64
	// BodyReadTimeout bounds the time to read a request body once its
	// headers arrived (default 60 s); past it: 408.
	BodyReadTimeout time.Duration
	// AllowedOrigins, AllowedMethods and AllowedHeaders configure CORS
	// (vLLM's --allowed-origins, --allowed-methods, --allowed-headers; each
	// defaults to "*"). With "*" headers, a preflight's requested headers
	// are allowed, as with vLLM's (Starlette's) CORS middleware.
	AllowedOrigins []string
	AllowedMethods []string
	AllowedHeaders []string
	// RequestTimeout is the default per-request deadline (0: none); the
	// request's "timeout" field (seconds) overrides it.
	RequestTimeout time.Duration
	// MaxLogprobs bounds logprobs / top_logprobs (default 20).
	MaxLogprobs int
	// Telemetry receives API request events (default: none).
	Telemetry Telemetry
	// Metrics, when set, is served on GET /metrics.
	Metrics http.Handler
	// Version is reported by /version.
	Version string
	Logger  *slog.Logger
}

// Model is what the server serves once loading is done.
type Model struct {
	Engine    *engine.Engine
	Tokenizer Tokenizer
	// Names are the served model names; the first one is reported in
	// responses. Requests may name any of them (or none).
	Names       []string
	Root        string // the model path
	Description string
	MaxModelLen int
	Created     int64
	// PriorityScheduling: the engine schedules by the requests' priority
	// (--scheduling-policy priority); otherwise a request that sets one is
	// refused, as vLLM refuses it.
	PriorityScheduling bool
	// Defaults are the model's own sampling defaults (see SamplingDefaults).
	Defaults SamplingDefaults
}

// SamplingDefaults are the sampling parameters a model recommends, from
// its generation_config.json as vLLM's --generation-config auto takes them:
// they apply to requests that leave the parameter unset. Nil fields: the
// API's defaults. MaxTokens (max_new_tokens) caps the default max_tokens,
// which otherwise fills the context.
type SamplingDefaults struct {
	Temperature, TopP, MinP, RepetitionPenalty *float64
	TopK, MaxTokens                            *int
}

// Server is the OpenAI-compatible API. It answers 503 on model routes until
// SetModel is called.
type Server struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	model   atomic.Pointer[Model]
	closing atomic.Bool
	ids     idGen
}

// New makes a server.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = time.Minute
	}
	if len(opts.AllowedOrigins) == 0 {
		opts.AllowedOrigins = []string{"*"}
	}
	if len(opts.AllowedMethods) == 0 {
		opts.AllowedMethods = []string{"*"}
	}
	if len(opts.AllowedHeaders) == 0 {
		opts.AllowedHeaders = []string{"*"}
	}
	if opts.MaxLogprobs <= 0 {
		opts.MaxLogprobs = 20
	}
	if opts.Telemetry == nil {
		opts.Telemetry = NopTelemetry{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	s.routes()
	return s
}

// SetModel makes the server ready to serve m.
func (s *Server) SetModel(m *Model) { s.model.Store(m) }

// SetClosing makes model routes answer 503 (shutting down).
func (s *Server) SetClosing() { s.closing.Store(true) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cors(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /health", s.handleHealth)
	s.mux.HandleFunc("GET /version", s.handleVersion)
	if s.opts.Metrics != nil {
		s.mux.Handle("GET /metrics", s.opts.Metrics)
	}
	s.mux.HandleFunc("GET /v1/models", s.auth(s.handleModels))
	s.mux.HandleFunc("POST /v1/completions", s.auth(s.handleCompletions))
	s.mux.HandleFunc("POST /v1/chat/completions", s.auth(s.handleChat))
	s.mux.HandleFunc("POST /tokenize", s.auth(s.handleTokenize))
	s.mux.HandleFunc("POST /detokenize", s.auth(s.handleDetokenize))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		getRoute := r.URL.Path == "/health" || r.URL.Path == "/version" || r.URL.Path == "/v1/models" || r.URL.Path == "/metrics"
		if _, pattern := s.mux.Handler(&http.Request{Method: http.MethodPost, URL: r.URL, Host: r.Host}); pattern != "/" || getRoute {
			if getRoute {
				w.Header().Set("Allow", "GET, HEAD")
			} else {
				w.Header().Set("Allow", "POST")
			}
			writeError(w, &APIError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error",
				Message: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)})
			return
		}
		writeError(w, &APIError{Status: http.StatusNotFound, Type: "not_found_error",
			Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
}

// cors answers preflight requests and sets the CORS headers; it returns
// true when the request was fully answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	allowed := ""
	for _, o := range s.opts.AllowedOrigins {
		if o == "*" || o == origin {
			allowed = o
			break
		}
	}
	if allowed == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", allowed)
	if allowed != "*" {
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", allowList(s.opts.AllowedMethods, "GET, HEAD, POST, OPTIONS"))
		if requested := r.Header.Get("Access-Control-Request-Headers"); requested != "" && slices.Contains(s.opts.AllowedHeaders, "*") {
			h.Set("Access-Control-Allow-Headers", requested)
			h.Add("Vary", "Access-Control-Request-Headers")
		} else {
			h.Set("Access-Control-Allow-Headers", allowList(s.opts.AllowedHeaders, "Authorization, Content-Type, traceparent, tracestate"))
		}
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// allowList is a CORS allow header's value: the configured list, or all
// (what this server serves or reads) for "*".
func allowList(list []string, all string) string {
	if slices.Contains(list, "*") {
		return all
	}
	return strings.Join(list, ", ")
}

// auth checks the API key when one is configured.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.opts.APIKey == "" {
		return h
	}
	want := []byte("Bearer " + s.opts.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(w, &APIError{Status: http.StatusUnauthorized, Type: "authentication_error",
				Code: "invalid_api_key", Message: "Incorrect or missing API key (Authorization: Bearer <key>)."})
			return
		}
		h(w, r)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.closing.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
	case s.model.Load() == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "loading"})
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (s *Server) handleVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.opts.Version})
}

// ready returns the served model, or an error while loading or closing.
func (s *Server) ready() (*Model, *APIError) {
	if s.closing.Load() {
		return nil, unavailable(ReasonShutdown, "The server is shutting down.")
	}
	m := s.model.Load()
	if m == nil {
		return nil, unavailable(ReasonModelLoading, "The model is still loading; retry shortly.")
	}
	return m, nil
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	m, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	list := ModelList{Object: "list"}
	for _, name := range m.Names {
		list.Data = append(list.Data, ModelCard{ID: name, Object: "model", Created: m.Created, OwnedBy: "vserve",
			Root: m.Root, MaxModelLen: m.MaxModelLen, Description: m.Description})
	}
	writeJSON(w, http.StatusOK, list)
}

// readRequest checks that the server can serve, decodes the body into req
// and checks the model it names (model points at req's model field).
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, req any, model *string) (*Model, *APIError) {
	m, aerr := s.ready()
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.decodeBody(w, r, req); aerr != nil {
		return nil, aerr
	}
	if aerr := checkModel(m, *model); aerr != nil {
		return nil, aerr
	}
	return m, nil
}

// checkModel accepts an empty name or one of the served names.
func checkModel(m *Model, name string) *APIError {
	if name == "" {
		return nil
	}
	for _, n := range m.Names {
		if n == name {
			return nil
		}
	}
	return notFound("model", fmt.Sprintf("The model `%s` does not exist.", name))
}

// decodeBody reads a JSON body under the size limit into v.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *APIError {
	// A client that sends its headers and then trickles or stalls the body
	// must not hold a connection and a goroutine forever. The deadline is
	// lifted once the whole body is read (the rest of the exchange is the
	// response's); after a failed read it stays, so that the server does
	// not wait for the rest of the body when the handler returns either.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(s.opts.BodyReadTimeout)) == nil
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err == nil && deadline {
		_ = rc.SetReadDeadline(time.Time{}) // cannot fail where setting it did not
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &APIError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
				Message: fmt.Sprintf("Request body is larger than %d bytes.", mbe.Limit), Reason: ReasonValidation}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &APIError{Status: http.StatusRequestTimeout, Type: "invalid_request_error",
				Message: fmt.Sprintf("The request body did not arrive within %v.", s.opts.BodyReadTimeout), Reason: ReasonClientDisconnect}
		}
		return &APIError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: "Could not read the request body: " + err.Error(), Reason: ReasonClientDisconnect}
	}
	if err := json.Unmarshal(dropMiscasedKeys(data, v), v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			field := jsonFieldPath(te.Field)
			return badRequest(field, "%s: expected %s, got a JSON %s.", field, jsonTypeName(te.Type), te.Value)
		case errors.As(err, &te):
			return badRequest("", "The request body must be a JSON object, got a JSON %s.", te.Value)
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("", "Malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return badRequest("", "Invalid request: %s", err) // a field's own check (UnmarshalJSON)
	}
	return nil
}

// jsonFieldPath is the JSON path of a field of a request type without the
// Go names of embedded structs (SamplingFields.temperature: temperature).
func jsonFieldPath(path string) string {
	parts := strings.Split(path, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && !unicode.IsUpper(rune(p[0])) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

// jsonTypeName names a request field's Go type as the JSON a client sends.
func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// idGen makes unique request ids.
type idGen struct{ n atomic.Uint64 }

func (g *idGen) next(prefix string) string {
	return fmt.Sprintf("%s-%x%08x", prefix, time.Now().UnixNano()&0xffffffffff, g.n.Add(1))
}
