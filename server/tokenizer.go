package server

// Tokenizer is what the server needs of a model's tokenizer. The
// production implementation adapts package tokenizer (see cmd/vserve/app);
// tests use a byte-level one.
type Tokenizer interface {
	// Encode tokenises text; addSpecialTokens adds BOS and the like as the
	// model's post-processor says.
	Encode(text string, addSpecialTokens bool) ([]int32, error)
	// Decode turns ids into text.
	Decode(ids []int32, skipSpecialTokens bool) (string, error)
	// TokenText is the text of one token as logprobs and token_strs show it.
	TokenText(id int32) string
	// NewDecoder starts an incremental detokeniser after the given prompt.
	NewDecoder(prompt []int32, skipSpecialTokens bool) Decoder
	// RenderChat applies the chat template to messages.
	RenderChat(messages []ChatMessage, opts ChatOptions) (string, error)
	// EOSTokenIDs are the ids that end generation.
	EOSTokenIDs() []int32
	// VocabSize bounds valid token ids.
	VocabSize() int
}

// Decoder turns a stream of token ids into text, holding back incomplete
// UTF-8 sequences.
type Decoder interface {
	// Add consumes one token and returns the new text (possibly "").
	Add(id int32) string
	// Flush returns the text still held back at the end of generation.
	Flush() string
}

// ChatOptions are the chat-template options of a request.
type ChatOptions struct {
	AddGenerationPrompt  bool
	ContinueFinalMessage bool
}
