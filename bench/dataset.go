package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
)

// Prompt is one request of a workload.
type Prompt struct {
	Text      string  // prompt text (chat: the user message)
	System    string  // chat only: a system message (the shared-prefix workload puts its prefix here)
	TokenIDs  []int32 // when set, completions send these ids instead of Text
	PromptLen int     // input tokens as the target's tokenizer counts them (0: unknown)
	OutputLen int     // max_tokens asked for
}

// Tokenizer is what the datasets need of the target model's tokenizer;
// *tokenizer.Tokenizer satisfies it.
type Tokenizer interface {
	Encode(text string, addSpecialTokens bool) []int32
	Decode(ids []int32, skipSpecialTokens bool) string
	VocabSize() int
	IsSpecial(id int32) bool
}

// LenRange draws lengths uniformly from the integers in
// [floor(Mean*(1-Ratio)), ceil(Mean*(1+Ratio))], as vLLM's
// --random-range-ratio does. Ratio must be in [0, 1).
type LenRange struct {
	Mean  int
	Ratio float64
}

// Bounds returns the lowest and highest length drawn. It fails for a ratio
// outside [0, 1) (NaN included).
func (l LenRange) Bounds() (lo, hi int, err error) {
	if !(l.Ratio >= 0 && l.Ratio < 1) {
		return 0, 0, fmt.Errorf("bench: range ratio %v is not in [0, 1)", l.Ratio)
	}
	lo = int(math.Floor(float64(l.Mean) * (1 - l.Ratio)))
	hi = int(math.Ceil(float64(l.Mean) * (1 + l.Ratio)))
	return lo, hi, nil
}

// drawLen draws a length uniformly from [lo, hi].
func drawLen(r *rand.Rand, lo, hi int) int {
	return lo + r.IntN(hi-lo+1)
}

// RandomPrompts makes n prompts of random tokens whose text re-encodes to
// exactly the drawn input length (token-exact through tok), asking for the
// drawn output length. Special tokens are never drawn. TokenIDs always has
// exactly the drawn length; when no text re-encodes to it (rare: small
// vocabularies), completions still send the exact ids. It fails for a
// range ratio outside [0, 1) and for an input range that reaches below one
// token; output lengths are at least one.
func RandomPrompts(tok Tokenizer, n int, in, out LenRange, seed uint64) ([]Prompt, error) {
	if tok == nil {
		return nil, fmt.Errorf("bench: random prompts need the target model's tokenizer")
	}
	inLo, inHi, err := in.Bounds()
	if err != nil {
		return nil, err
	}
	if inLo < 1 {
		return nil, fmt.Errorf("bench: input length %d with range ratio %v can draw %d tokens", in.Mean, in.Ratio, inLo)
	}
	outLo, outHi, err := out.Bounds()
	if err != nil {
		return nil, err
	}
	// As in vLLM, output lengths are at least 1.
	outLo, outHi = max(outLo, 1), max(outHi, 1)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	prompts := make([]Prompt, n)
	for i := range prompts {
		want := drawLen(r, inLo, inHi)
		text, ids, err := exactText(tok, r, want)
		if err != nil {
			return nil, err
		}
		prompts[i] = Prompt{Text: text, TokenIDs: ids, PromptLen: len(ids), OutputLen: drawLen(r, outLo, outHi)}
	}
	return prompts, nil
}

// exactText draws random token ids, decodes them and re-encodes the text,
// trimming or extending until the text encodes to exactly want tokens.
func exactText(tok Tokenizer, r *rand.Rand, want int) (string, []int32, error) {
	vocab := tok.VocabSize()
	ids := make([]int32, 0, want)
	for attempt := 0; attempt < 64; attempt++ {
		for len(ids) < want {
			id := int32(r.IntN(vocab))
			if tok.IsSpecial(id) {
				continue
			}
			ids = append(ids, id)
		}
		text := tok.Decode(ids[:want], true)
		got := tok.Encode(text, false)
		if len(got) == want {
			return text, got, nil
		}
		if len(got) > want {
			got = got[:want]
		}
		ids = append(ids[:0], got...)
	}
	// Some vocabularies (small byte-fallback ones) keep re-merging at the
	// boundaries. Fall back to the ids themselves: completions send them as
	// a token-id prompt, which is exact; the text is their decoding.
	for len(ids) < want {
		if id := int32(r.IntN(vocab)); !tok.IsSpecial(id) {
			ids = append(ids, id)
		}
	}
	ids = ids[:want]
	return tok.Decode(ids, true), ids, nil
}

// shareGPTEntry is one conversation of a ShareGPT-format file.
type shareGPTEntry struct {
	Conversations []struct {
		From  string `json:"from"`
		Value string `json:"value"`
	} `json:"conversations"`
}

// ShareGPTOptions filter a ShareGPT file the way vLLM's benchmark does.
type ShareGPTOptions struct {
	N         int // prompts wanted (0: all that pass)
	OutputLen int // fixed output length; 0 uses the reference answer's length (needs a tokenizer), held to at least 4 tokens
	MaxPrompt int // drop prompts longer than this (default 1024 tokens)
	MaxTotal  int // drop prompt+output longer than this (default 2048 tokens)
	Seed      uint64
}

// LoadShareGPT reads a ShareGPT JSON file (a list of {"conversations":
// [{"from","value"}...]}), takes the first human turn as the prompt and the
// next turn's length as the output length, shuffles with the seed and keeps
// the first N that pass the filters.
func LoadShareGPT(path string, tok Tokenizer, o ShareGPTOptions) ([]Prompt, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseShareGPT(data, tok, o)
}

// ParseShareGPT is LoadShareGPT on bytes already read.
func ParseShareGPT(data []byte, tok Tokenizer, o ShareGPTOptions) ([]Prompt, error) {
	var entries []shareGPTEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("bench: ShareGPT file: %w", err)
	}
	if o.MaxPrompt == 0 {
		o.MaxPrompt = 1024
	}
	if o.MaxTotal == 0 {
		o.MaxTotal = 2048
	}
	if tok == nil && o.OutputLen == 0 {
		return nil, fmt.Errorf("bench: ShareGPT without a tokenizer needs a fixed output length")
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	r.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
	var prompts []Prompt
	for _, e := range entries {
		if o.N > 0 && len(prompts) == o.N {
			break
		}
		if len(e.Conversations) < 2 || strings.TrimSpace(e.Conversations[0].Value) == "" {
			continue
		}
		p := Prompt{Text: e.Conversations[0].Value, OutputLen: o.OutputLen}
		if tok != nil {
			p.PromptLen = len(tok.Encode(p.Text, false))
			if p.OutputLen == 0 {
				p.OutputLen = len(tok.Encode(e.Conversations[1].Value, false))
			}
			// As in vLLM, a fixed output length is not held to the minimum.
			short := p.PromptLen < 4 || (o.OutputLen == 0 && p.OutputLen < 4)
			if short || p.PromptLen > o.MaxPrompt || p.PromptLen+p.OutputLen > o.MaxTotal {
				continue
			}
		}
		prompts = append(prompts, p)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("bench: no usable conversation in the ShareGPT data")
	}
	return prompts, nil
}

// SharedPrefixPrompts makes groups*perGroup prompts: each group shares one
// random system prompt of prefixLen tokens, each prompt adds its own random
// question of suffixLen tokens, to exercise the prefix cache. Prompts of
// different groups are interleaved.
func SharedPrefixPrompts(tok Tokenizer, groups, perGroup, prefixLen, suffixLen, outputLen int, seed uint64) ([]Prompt, error) {
	if tok == nil {
		return nil, fmt.Errorf("bench: shared-prefix prompts need the target model's tokenizer")
	}
	r := rand.New(rand.NewPCG(seed, 0xfeed))
	prefixes := make([]string, groups)
	for g := range prefixes {
		text, _, err := exactText(tok, r, prefixLen)
		if err != nil {
			return nil, err
		}
		prefixes[g] = text
	}
	var prompts []Prompt
	for i := 0; i < perGroup; i++ {
		for g := 0; g < groups; g++ {
			q, _, err := exactText(tok, r, suffixLen)
			if err != nil {
				return nil, err
			}
			full := prefixes[g] + q
			prompts = append(prompts, Prompt{
				Text: full, System: prefixes[g], PromptLen: len(tok.Encode(full, false)), OutputLen: outputLen,
			})
		}
	}
	return prompts, nil
}
