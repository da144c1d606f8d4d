package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// This file holds the OpenAI wire types (requests and responses) and the
// vLLM extensions vserve accepts.

// SamplingFields are the generation parameters shared by completions and
// chat completions. Pointers distinguish "unset" from zero.
type SamplingFields struct {
	Model             string             `json:"model"`
	MaxTokens         *int               `json:"max_tokens"`
	Temperature       *float64           `json:"temperature"`
	TopP              *float64           `json:"top_p"`
	TopK              *int               `json:"top_k"`
	MinP              *float64           `json:"min_p"`
	Seed              *int64             `json:"seed"`
	N                 *int               `json:"n"`
	Stop              StringList         `json:"stop"`
	StopTokenIDs      []int32            `json:"stop_token_ids"`
	PresencePenalty   *float64           `json:"presence_penalty"`
	FrequencyPenalty  *float64           `json:"frequency_penalty"`
	RepetitionPenalty *float64           `json:"repetition_penalty"`
	LogitBias         map[string]float64 `json:"logit_bias"`
	MinTokens         int                `json:"min_tokens"`
	IgnoreEOS         bool               `json:"ignore_eos"`
	Stream            bool               `json:"stream"`
	StreamOptions     *StreamOptions     `json:"stream_options"`
	User              string             `json:"user"`
	CacheSalt         string             `json:"cache_salt"`
	Priority          int                `json:"priority"`
	// Timeout is the per-request deadline in seconds (vserve extension).
	Timeout *float64 `json:"timeout"`
	// IncludeStopStrInOutput keeps a matched stop string in the text (vLLM).
	IncludeStopStrInOutput bool  `json:"include_stop_str_in_output"`
	SkipSpecialTokens      *bool `json:"skip_special_tokens"`
	BestOf                 *int  `json:"best_of"`
	// PromptLogprobs asks for the logprobs of the prompt tokens plus the
	// top k at each position (vLLM extension).
	PromptLogprobs *int `json:"prompt_logprobs"`
	Unsupported
}

// Unsupported are the request fields of features vserve does not
// implement (structured output, vLLM's guided decoding): a request that
// uses them gets a 400 (rejectUnsupported), not an answer that silently
// ignores them.
type Unsupported struct {
	ResponseFormat    *ResponseFormat `json:"response_format"`
	GuidedJSON        json.RawMessage `json:"guided_json"`
	GuidedRegex       json.RawMessage `json:"guided_regex"`
	GuidedChoice      json.RawMessage `json:"guided_choice"`
	GuidedGrammar     json.RawMessage `json:"guided_grammar"`
	StructuredOutputs json.RawMessage `json:"structured_outputs"`
}

// ResponseFormat is OpenAI's response_format; only type "text" is served.
type ResponseFormat struct {
	Type string `json:"type"`
}

// StreamOptions are the options of a streaming request.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// StringList accepts a string or a list of strings.
type StringList []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *StringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("must be a string or a list of strings")
	}
	*s = many
	return nil
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	SamplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Echo     bool            `json:"echo"`
	Logprobs *int            `json:"logprobs"`
	Suffix   *string         `json:"suffix"`
}

// ChatRequest is the body of POST /v1/chat/completions.
type ChatRequest struct {
	SamplingFields
	Messages             []ChatMessage `json:"messages"`
	MaxCompletionTokens  *int          `json:"max_completion_tokens"`
	Logprobs             bool          `json:"logprobs"`
	TopLogprobs          *int          `json:"top_logprobs"`
	AddGenerationPrompt  *bool         `json:"add_generation_prompt"`
	ContinueFinalMessage bool          `json:"continue_final_message"`
	AddSpecialTokens     bool          `json:"add_special_tokens"`
	// Tool calling is not implemented (rejectUnsupportedTools).
	Tools        json.RawMessage `json:"tools"`
	ToolChoice   json.RawMessage `json:"tool_choice"`
	Functions    json.RawMessage `json:"functions"`
	FunctionCall json.RawMessage `json:"function_call"`
}

// ChatMessage is one message; Content is a string or a list of text parts.
type ChatMessage struct {
	Role    string         `json:"role"`
	Content MessageContent `json:"content"`
	Name    string         `json:"name,omitempty"`
}

// MessageContent is a message's text, given as a string or as parts.
type MessageContent struct {
	Text  string
	Valid bool // the field was present and not null
}

// UnmarshalJSON accepts a string, null, or a list of {"type":"text","text":...}.
func (c *MessageContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*c = MessageContent{}
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		c.Valid = true
		return json.Unmarshal(b, &c.Text)
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or a list of content parts")
	}
	var sb bytes.Buffer
	for i, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part %d: type %q is not supported (only text)", i, p.Type)
		}
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(p.Text)
	}
	c.Text, c.Valid = sb.String(), true
	return nil
}

// MarshalJSON writes the text as a string.
func (c MessageContent) MarshalJSON() ([]byte, error) {
	if !c.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(c.Text)
}

// Usage is the token accounting of a response.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details"`
}

// PromptTokensDetails holds the prefix-cache hits.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// CompletionLogprobs are the legacy completions logprobs. With echo, the
// prompt tokens come first; the first prompt token has a null logprob and
// null top logprobs.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// CompletionChoice is one choice of a completion (or a chunk of one).
type CompletionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
	// StopReason is vLLM's: the stop string or stop token id that ended
	// the choice; null when it ended otherwise, EOS included.
	StopReason any `json:"stop_reason"`
	// PromptLogprobs are set when prompt logprobs were computed (vLLM).
	PromptLogprobs []PromptLogprobsEntry `json:"prompt_logprobs,omitempty"`
}

// PromptLogprob is one token's entry in vLLM's prompt_logprobs.
type PromptLogprob struct {
	Logprob      float64 `json:"logprob"`
	Rank         int     `json:"rank"`
	DecodedToken string  `json:"decoded_token"`
}

// PromptLogprobItem is a token id with its PromptLogprob.
type PromptLogprobItem struct {
	TokenID int32
	PromptLogprob
}

// PromptLogprobsEntry is the entry of one prompt position: a JSON object
// from token id to PromptLogprob, the prompt token first, then the top k
// in rank order; nil (the first prompt token) is null.
type PromptLogprobsEntry []PromptLogprobItem

// MarshalJSON writes the entry as an object keyed by token id, in order.
func (e PromptLogprobsEntry) MarshalJSON() ([]byte, error) {
	if e == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, it := range e {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", strconv.Itoa(int(it.TokenID)))
		v, err := json.Marshal(it.PromptLogprob)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// CompletionResponse is the body of a completion, or one SSE chunk of it.
type CompletionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// ChatLogprob is one token of chat logprobs.
type ChatLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one alternative of a chat logprob.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatLogprobs are the logprobs of a chat choice.
type ChatLogprobs struct {
	Content []ChatLogprob `json:"content"`
}

// ChatResponseMessage is the assistant message of a chat choice.
type ChatResponseMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int                 `json:"index"`
	Message      ChatResponseMessage `json:"message"`
	Logprobs     *ChatLogprobs       `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
	StopReason   any                 `json:"stop_reason"` // as CompletionChoice's
}

// ChatResponse is the body of a chat completion.
type ChatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage"`
	// PromptLogprobs are set when prompt_logprobs was asked (vLLM).
	PromptLogprobs []PromptLogprobsEntry `json:"prompt_logprobs,omitempty"`
}

// ChatDelta is the incremental message of a chat chunk.
type ChatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// ChatChunkChoice is one choice of a chat chunk.
type ChatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChatDelta     `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
	// StopReason is CompletionChoice's, on the chunk with the finish
	// reason only (as in vLLM): a JSON value, or empty.
	StopReason json.RawMessage `json:"stop_reason,omitempty"`
}

// ChatChunk is one SSE chunk of a streamed chat completion.
type ChatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	Usage   *Usage            `json:"usage"`
}

// ModelCard is one entry of /v1/models.
type ModelCard struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen int     `json:"max_model_len"`
	// Description says what the model is (e.g. that the built-in model has
	// random weights and produces gibberish). vserve extension.
	Description string `json:"description,omitempty"`
}

// ModelList is the body of /v1/models.
type ModelList struct {
	Object string      `json:"object"`
	Data   []ModelCard `json:"data"`
}

// TokenizeRequest is the body of POST /tokenize: a prompt, or chat messages.
type TokenizeRequest struct {
	Model                string        `json:"model"`
	Prompt               *string       `json:"prompt"`
	Messages             []ChatMessage `json:"messages"`
	AddSpecialTokens     *bool         `json:"add_special_tokens"`
	AddGenerationPrompt  *bool         `json:"add_generation_prompt"`
	ContinueFinalMessage bool          `json:"continue_final_message"`
	ReturnTokenStrs      bool          `json:"return_token_strs"`
}

// TokenizeResponse is the body answered by /tokenize.
type TokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int32  `json:"tokens"`
	TokenStrs   []string `json:"token_strs,omitempty"`
}

// DetokenizeRequest is the body of POST /detokenize.
type DetokenizeRequest struct {
	Model  string  `json:"model"`
	Tokens []int32 `json:"tokens"`
}

// DetokenizeResponse is the body answered by /detokenize.
type DetokenizeResponse struct {
	Prompt string `json:"prompt"`
}
