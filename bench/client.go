package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// API selects the OpenAI endpoint a target is driven through.
type API string

const (
	Completions API = "completions"
	Chat        API = "chat"
)

// Target is one OpenAI-compatible server.
type Target struct {
	Name    string // label in tables and comparisons
	BaseURL string // e.g. http://127.0.0.1:8000
	Model   string // "" asks /v1/models for the first model
	APIKey  string
	API     API
}

// Result is the outcome of one request, with timings measured by the client
// as vllm bench serve's request functions measure them, on the streamed
// chunks that carry a non-empty choices list (a chunk without choices, such
// as the final usage chunk, is no token).
type Result struct {
	Start        time.Time
	TTFT         time.Duration   // to the first chunk with choices, even if its text is empty
	ITL          []time.Duration // between successive chunks with choices, one per chunk after the first
	E2E          time.Duration   // to the last chunk with choices (not to [DONE])
	PromptTokens int             // from the server's usage (or the dataset when absent)
	// OutputTokens is the server's usage completion_tokens; without one (or
	// with 0), the generated text's tokens through Client.Tokenizer (without
	// special tokens), as vLLM counts them, or with no tokenizer the number
	// of chunks with choices.
	OutputTokens int
	Err          string // "" on success
	ErrKind      string // http_4xx, http_5xx, http_429, timeout, connection, protocol
}

// OK reports whether the request succeeded.
func (r *Result) OK() bool { return r.Err == "" }

// DefaultRequestTimeout is the time a request may take from start to end
// of its stream, vllm bench serve's total timeout per request.
const DefaultRequestTimeout = 6 * time.Hour

// Client sends benchmark requests to one target. Its requests carry what
// vllm bench serve's carry: max_tokens (chat: max_completion_tokens),
// streaming with usage, ignore_eos only when IgnoreEOS is set, and no
// temperature unless Temperature is set (the server's default applies).
type Client struct {
	Target Target
	HTTP   *http.Client
	// IgnoreEOS asks the server to generate max_tokens whatever the model
	// says (vLLM's ignore_eos extension).
	IgnoreEOS bool
	// Temperature, when set, is sent as the sampling temperature.
	Temperature *float64
	// Timeout bounds each request, from its start to the end of its stream
	// (0: no bound); a request past it fails with ErrKind "timeout".
	Timeout time.Duration
	// Tokenizer, when set, counts the output tokens of a stream that ends
	// without a usage chunk (see Result.OutputTokens).
	Tokenizer Tokenizer

	now func() time.Time // the clock (nil: time.Now); tests set it
}

func (c *Client) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// NewClient returns a client with a transport sized for many concurrent
// streams and the DefaultRequestTimeout.
func NewClient(t Target, maxConns int) *Client {
	if maxConns < 16 {
		maxConns = 16
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{Target: t, HTTP: &http.Client{Transport: tr}, Timeout: DefaultRequestTimeout}
}

// ResolveModel fills Target.Model from /v1/models when it is empty.
func (c *Client) ResolveModel(ctx context.Context) error {
	if c.Target.Model != "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Target.BaseURL, "/")+"/v1/models", nil)
	if err != nil {
		return err
	}
	c.auth(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", c.Target.Name, err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) == 0 {
		return fmt.Errorf("bench: %s: /v1/models lists no model (status %d)", c.Target.Name, resp.StatusCode)
	}
	c.Target.Model = list.Data[0].ID
	return nil
}

func (c *Client) auth(req *http.Request) {
	if c.Target.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.Target.APIKey)
	}
}

// body builds the JSON request for p.
func (c *Client) body(p Prompt) ([]byte, string) {
	req := map[string]any{
		"model":          c.Target.Model,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	if c.IgnoreEOS {
		req["ignore_eos"] = true
	}
	if c.Temperature != nil {
		req["temperature"] = *c.Temperature
	}
	path := "/v1/completions"
	req["max_tokens"] = p.OutputLen
	if c.Target.API == Chat {
		path = "/v1/chat/completions"
		delete(req, "max_tokens")
		req["max_completion_tokens"] = p.OutputLen
		var msgs []map[string]string
		user := p.Text
		if p.System != "" {
			msgs = append(msgs, map[string]string{"role": "system", "content": p.System})
			user = strings.TrimPrefix(p.Text, p.System)
		}
		req["messages"] = append(msgs, map[string]string{"role": "user", "content": user})
	} else if len(p.TokenIDs) > 0 {
		req["prompt"] = p.TokenIDs
	} else {
		req["prompt"] = p.Text
	}
	b, _ := json.Marshal(req)
	return b, path
}

// streamChunk is the part of a completions or chat chunk the client reads.
type streamChunk struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Do sends p and measures it. It never returns an error: failures are in
// the Result.
func (c *Client) Do(ctx context.Context, p Prompt) Result {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	body, path := c.body(p)
	res := Result{Start: c.clock(), PromptTokens: p.PromptLen}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.Target.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return fail(res, "protocol", err)
	}
	req.Header.Set("Content-Type", "application/json")
	c.auth(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fail(res, classifyNetErr(err), err)
	}
	defer closeForReuse(resp.Body)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fail(res, httpKind(resp.StatusCode), fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg))))
	}
	return c.readStream(res, resp.Body)
}

// closeForReuse reads what is left of a response (after [DONE], the end of
// the chunked stream) and closes it. Go's transport reuses a connection
// only when its response was read to the end: without this every request
// opened a new connection, and the server paid a connection and a new
// goroutine (whose stack grows from its starting size) per request, which
// clients that keep connections alive, as the OpenAI clients do, do not
// cost it. A response with more than maxDrain bytes left is dropped with
// its connection.
func closeForReuse(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}

const maxDrain = 64 << 10

// readStream reads a completions or chat stream into res. The request
// fails when the stream ends without [DONE], carries an error, or brings no
// chunk with choices (no output).
func (c *Client) readStream(res Result, body io.Reader) Result {
	sse := NewSSEReader(body)
	last := res.Start // the last chunk with choices
	chunks := 0       // chunks with choices
	var text strings.Builder
	for {
		data, err := sse.Next()
		if errors.Is(err, io.EOF) {
			return fail(res, "protocol", errors.New("stream ended without [DONE]"))
		}
		if err != nil {
			return fail(res, classifyNetErr(err), err)
		}
		now := c.clock()
		if bytes.Equal(data, []byte("[DONE]")) {
			if chunks == 0 {
				return fail(res, "protocol", errors.New("no chunk with choices: no output"))
			}
			res.E2E = last.Sub(res.Start)
			if res.OutputTokens == 0 {
				if c.Tokenizer != nil {
					res.OutputTokens = len(c.Tokenizer.Encode(text.String(), false))
				} else {
					res.OutputTokens = chunks
				}
			}
			return res
		}
		var ch streamChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return fail(res, "protocol", fmt.Errorf("bad chunk %q: %w", data, err))
		}
		if ch.Error != nil {
			return fail(res, "server_error", errors.New(ch.Error.Message))
		}
		if ch.Usage != nil {
			res.PromptTokens = ch.Usage.PromptTokens
			res.OutputTokens = ch.Usage.CompletionTokens
		}
		if len(ch.Choices) == 0 {
			continue
		}
		if chunks == 0 {
			res.TTFT = now.Sub(res.Start)
		} else {
			res.ITL = append(res.ITL, now.Sub(last))
		}
		last = now
		chunks++
		text.WriteString(ch.Choices[0].Text)
		text.WriteString(ch.Choices[0].Delta.Content)
	}
}

func fail(r Result, kind string, err error) Result {
	r.Err = err.Error()
	r.ErrKind = kind
	if r.E2E == 0 {
		r.E2E = time.Since(r.Start)
	}
	return r
}

func httpKind(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "http_429"
	case status >= 500:
		return "http_5xx"
	default:
		return "http_4xx"
	}
}

func classifyNetErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "connection"
	}
}
