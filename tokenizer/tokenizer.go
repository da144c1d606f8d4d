package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Tokenizer converts text to token ids and back. It is immutable after
// loading and safe for concurrent use.
type Tokenizer struct {
	model      *bpeModel
	normalizer normalizer
	preTok     preTokenizer
	post       postProcessor
	decoder    decoder

	addedRaw  *addedMatcher // added tokens matched before normalization
	addedNorm *addedMatcher // normalized added tokens, matched after it

	idToToken []string // file spelling of every id; "" for holes
	tokenToID map[string]int32
	special   []bool // by id

	bos     int32 // -1 when unknown
	eos     []int32
	cleanUp bool

	bosToken, eosToken string // spellings from tokenizer_config.json
	// anchor is a plain token TokenText decodes before the token asked
	// for (-1: none found); anchorText is its text.
	anchor     int32
	anchorText string

	// templateTokens are the other special tokens transformers passes to
	// chat templates (unk_token, pad_token, additional_special_tokens).
	templateTokens map[string]any

	chat       *ChatTemplate
	namedChats map[string]*ChatTemplate
}

// LoadFile loads a tokenizer.json alone. Without a tokenizer_config.json the
// BOS token is the one the post-processor prepends, and no clean-up of
// tokenization spaces is applied.
func LoadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseTokenizerJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t.bos = -1
	if id, ok := leadingSpecial(t.post); ok {
		t.bos = id
	}
	return t, nil
}

// LoadDir loads tokenizer.json from dir together with tokenizer_config.json
// (special tokens, add_bos_token/add_eos_token, clean-up rule, chat
// templates) and generation_config.json (extra EOS ids) when present.
// A chat_template.jinja (or chat_template.json) file in dir is used when
// the config has no chat template.
func LoadDir(dir string) (*Tokenizer, error) {
	t, err := LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	cfg, err := readTokenizerConfig(cfgPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		cfg = nil
	case err != nil:
		return nil, err
	}
	if cfg != nil {
		if err := t.applyConfig(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}
	gen, err := readGenerationConfig(filepath.Join(dir, "generation_config.json"))
	if err != nil {
		return nil, err
	}
	if gen != nil {
		t.addEOS(gen.EOSTokenID...)
		if t.bos < 0 && len(gen.BOSTokenID) == 1 {
			t.bos = gen.BOSTokenID[0]
		}
	}
	if t.chat == nil {
		if err := t.loadChatTemplateFile(filepath.Join(dir, "chat_template.jinja")); err != nil {
			return nil, err
		}
	}
	if t.chat == nil {
		if err := t.loadChatTemplateJSON(filepath.Join(dir, "chat_template.json")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Tokenizer) loadChatTemplateFile(path string) error {
	c, err := LoadChatTemplateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	t.chat = c
	return nil
}

// loadChatTemplateJSON reads a chat_template.json file
// ({"chat_template": ...}, as transformers saves for processors).
func (t *Tokenizer) loadChatTemplateJSON(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var v struct {
		ChatTemplate chatTemplateSpec `json:"chat_template"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := t.setChatTemplates(v.ChatTemplate); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func parseTokenizerJSON(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	t := &Tokenizer{bos: -1}
	var err error
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	var info preTokenizerInfo
	if t.preTok, err = parsePreTokenizer(f.PreTokenizer, &info); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if t.post, err = parsePostProcessor(f.PostProcessor); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	if t.decoder, err = parseDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	if err := checkModelType(f.Model); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	vocab, err := parseVocab(f.Model.Vocab)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if t.model, err = parseModel(f.Model, vocab, info.byteLevel); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := checkIDs(vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	t.buildIDTable(vocab, f.AddedTokens)
	if err := t.setAddedTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	t.setAnchor()
	return t, nil
}

// checkModelType accepts BPE models (an untyped model with merges is BPE:
// files written before the type tag existed).
func checkModelType(m modelJSON) error {
	typ := m.Type
	if typ == "" && !isNull(m.Merges) {
		typ = "BPE"
	}
	if typ != "BPE" {
		return fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	return nil
}

func parseModel(m modelJSON, vocab map[string]int32, byteLevel bool) (*bpeModel, error) {
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("BPE dropout %v is not supported", *m.Dropout)
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	o := bpeOptions{
		unkToken:     m.UnkToken,
		fuseUnk:      m.FuseUnk,
		byteFallback: m.ByteFallback,
		byteLevel:    byteLevel,
		ignoreMerges: m.IgnoreMerges,
	}
	if m.ContinuingSubwordPrefix != nil {
		o.contPrefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		o.eowSuffix = *m.EndOfWordSuffix
	}
	return newBPEModel(vocab, merges, o)
}

// maxTokenID bounds token ids so that a corrupt file cannot make the id
// table huge; real vocabularies stay far below it.
const maxTokenID = 1 << 24

// checkIDs rejects negative ids and ids so far beyond the number of tokens
// that the id table would be mostly holes (a corrupt file).
func checkIDs(vocab map[string]int32, added []addedTokenJSON) error {
	limit := int32(min(2*(len(vocab)+len(added))+1024, maxTokenID))
	for tok, id := range vocab {
		if id < 0 || id >= limit {
			return fmt.Errorf("model.vocab[%q] = %d: id out of range [0, %d)", tok, id, limit)
		}
	}
	for _, a := range added {
		if a.ID < 0 || a.ID >= limit {
			return fmt.Errorf("added_tokens: %q has id %d, out of range [0, %d)", a.Content, a.ID, limit)
		}
	}
	return nil
}

// buildIDTable fills idToToken/tokenToID from the model vocab and the added
// tokens (which may extend past the model vocab or override entries).
func (t *Tokenizer) buildIDTable(vocab map[string]int32, added []addedTokenJSON) {
	n := 0
	for _, id := range vocab {
		n = max(n, int(id)+1)
	}
	for _, a := range added {
		n = max(n, int(a.ID)+1)
	}
	t.idToToken = make([]string, n)
	t.special = make([]bool, n)
	t.tokenToID = make(map[string]int32, len(vocab)+len(added))
	for tok, id := range vocab {
		t.idToToken[id] = tok
		t.tokenToID[tok] = id
	}
	for _, a := range added {
		t.idToToken[a.ID] = a.Content
		t.tokenToID[a.Content] = a.ID
		t.special[a.ID] = a.Special
	}
}

// setAddedTokens builds the matchers that split added tokens out of text.
func (t *Tokenizer) setAddedTokens(list []addedTokenJSON) error {
	var raw, normed []*addedToken
	for _, a := range list {
		if a.ID < 0 {
			return fmt.Errorf("added_tokens: %q has negative id", a.Content)
		}
		tok := &addedToken{
			content: a.Content, id: a.ID, special: a.Special,
			lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord,
			normalized: a.Normalized,
		}
		// HF matches normalized tokens in the normalized text; with no
		// normalizer that is the raw text.
		if tok.normalized && t.normalizer != nil {
			normed = append(normed, tok)
		} else {
			raw = append(raw, tok)
		}
	}
	t.addedRaw = newAddedMatcher(raw, func(a *addedToken) string { return a.content })
	if len(normed) > 0 {
		t.addedNorm = newAddedMatcher(normed, func(a *addedToken) string {
			return t.normalizer.normalize(a.content)
		})
	}
	return nil
}

// applyConfig applies tokenizer_config.json: special tokens, BOS/EOS,
// add_bos_token/add_eos_token, clean-up and chat templates.
func (t *Tokenizer) applyConfig(cfg *tokenizerConfig) error {
	if err := t.applyAddedTokensDecoder(cfg); err != nil {
		return err
	}
	if err := t.applyBOSAndEOS(cfg); err != nil {
		return err
	}
	t.setTemplateTokens(cfg)
	if cfg.AddBOSToken != nil || cfg.AddEOSToken != nil {
		t.overridePostProcessor(cfg)
	}
	if cfg.CleanUpTokenizationSpaces != nil {
		t.cleanUp = *cfg.CleanUpTokenizationSpaces
	}
	return t.setChatTemplates(cfg.ChatTemplate)
}

// applyAddedTokensDecoder marks special tokens named in the config and adds
// the tokens that only added_tokens_decoder names.
func (t *Tokenizer) applyAddedTokensDecoder(cfg *tokenizerConfig) error {
	decoded, err := cfg.sortedAddedTokensDecoder()
	if err != nil {
		return err
	}
	var extra []addedTokenJSON
	for _, a := range decoded {
		id, known := t.tokenToID[a.Content]
		switch {
		case known && id == a.ID && a.Special:
			t.special[a.ID] = true
		case !known:
			extra = append(extra, a)
		}
	}
	if len(extra) > 0 {
		if err := t.addTokens(extra); err != nil {
			return err
		}
	}
	for _, s := range cfg.AdditionalSpecialTokens {
		if id, ok := t.tokenToID[s.content]; ok {
			t.special[id] = true
		}
	}
	return nil
}

func (t *Tokenizer) applyBOSAndEOS(cfg *tokenizerConfig) error {
	if s := cfg.BOSToken.content; s != "" {
		id, ok := t.tokenToID[s]
		if !ok {
			return fmt.Errorf("bos_token %q is not in the vocabulary", s)
		}
		t.bos, t.bosToken = id, s
	}
	if s := cfg.EOSToken.content; s != "" {
		id, ok := t.tokenToID[s]
		if !ok {
			return fmt.Errorf("eos_token %q is not in the vocabulary", s)
		}
		t.addEOS(id)
		t.eosToken = s
	}
	return nil
}

// setTemplateTokens keeps the special tokens transformers passes to chat
// templates besides bos_token and eos_token.
func (t *Tokenizer) setTemplateTokens(cfg *tokenizerConfig) {
	t.templateTokens = map[string]any{}
	if s := cfg.UnkToken.content; s != "" {
		t.templateTokens["unk_token"] = s
	}
	if s := cfg.PadToken.content; s != "" {
		t.templateTokens["pad_token"] = s
	}
	if len(cfg.AdditionalSpecialTokens) > 0 {
		list := make([]string, len(cfg.AdditionalSpecialTokens))
		for i, s := range cfg.AdditionalSpecialTokens {
			list[i] = s.content
		}
		t.templateTokens["additional_special_tokens"] = list
	}
}

// addTokens adds tokens named only in added_tokens_decoder.
func (t *Tokenizer) addTokens(extra []addedTokenJSON) error {
	for _, a := range extra {
		if a.ID < 0 || a.ID >= maxTokenID {
			return fmt.Errorf("added_tokens_decoder: %q has id %d, out of range [0, %d)", a.Content, a.ID, maxTokenID)
		}
		if int(a.ID) >= len(t.idToToken) {
			t.idToToken = append(t.idToToken, make([]string, int(a.ID)+1-len(t.idToToken))...)
			t.special = append(t.special, make([]bool, int(a.ID)+1-len(t.special))...)
		}
		t.idToToken[a.ID] = a.Content
		t.tokenToID[a.Content] = a.ID
		t.special[a.ID] = a.Special
	}
	all := make([]addedTokenJSON, 0)
	for _, m := range []*addedMatcher{t.addedRaw, t.addedNorm} {
		if m == nil {
			continue
		}
		for _, c := range m.byFirst {
			for _, a := range c {
				all = append(all, addedTokenJSON{ID: a.id, Content: t.idToToken[a.id], Special: a.special,
					LStrip: a.lstrip, RStrip: a.rstrip, SingleWord: a.singleWord, Normalized: a.normalized})
			}
		}
	}
	return t.setAddedTokens(append(all, extra...))
}

// overridePostProcessor makes add_bos_token/add_eos_token decide which
// special tokens Encode adds, as transformers' Llama-family fast tokenizers
// do by rewriting the TemplateProcessing post-processor.
func (t *Tokenizer) overridePostProcessor(cfg *tokenizerConfig) {
	addBOS := cfg.AddBOSToken != nil && *cfg.AddBOSToken
	addEOS := cfg.AddEOSToken != nil && *cfg.AddEOSToken
	if cfg.AddBOSToken == nil {
		_, addBOS = leadingSpecial(t.post)
	}
	p := &templateProcessor{}
	if addBOS && t.bos >= 0 {
		p.before = []int32{t.bos}
	}
	if addEOS && cfg.EOSToken.content != "" {
		p.after = []int32{t.tokenToID[cfg.EOSToken.content]}
	}
	t.post = p
}

func (t *Tokenizer) addEOS(ids ...int32) {
	for _, id := range ids {
		if !slices.Contains(t.eos, id) {
			t.eos = append(t.eos, id)
		}
	}
}

// Encode converts text to token ids. Added and special tokens written in
// the text are recognised. addSpecialTokens adds what the post-processor
// (or add_bos_token/add_eos_token) asks for, typically BOS.
func (t *Tokenizer) Encode(text string, addSpecialTokens bool) []int32 {
	ids := make([]int32, 0, len(text)/3+2)
	for _, seg := range t.addedRaw.split(text, 0) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		ids = t.encodeSection(ids, seg)
	}
	if addSpecialTokens && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// encodeSection normalizes, pre-tokenizes and BPE-encodes text that holds
// no raw added token.
func (t *Tokenizer) encodeSection(ids []int32, seg segment) []int32 {
	text := seg.text
	if t.normalizer != nil {
		text = t.normalizer.normalize(text)
	}
	for _, sub := range t.addedNorm.split(text, 0) {
		if sub.id >= 0 {
			ids = append(ids, sub.id)
			continue
		}
		pieces := []piece{{text: sub.text, atStart: seg.start == 0 && sub.start == 0}}
		if t.preTok != nil {
			pieces = t.preTok.preTokenize(pieces)
		}
		for _, p := range pieces {
			ids = t.model.encodeWord(ids, p.text)
		}
	}
	return ids
}

// Decode converts ids to text. skipSpecialTokens drops special tokens
// (BOS, EOS, chat markers). Ids outside the vocabulary are ignored.
func (t *Tokenizer) Decode(ids []int32, skipSpecialTokens bool) string {
	s := t.decodeRaw(ids, skipSpecialTokens)
	if t.cleanUp {
		s = cleanUpTokenization(s)
	}
	return s
}

// decodeRaw decodes without the clean-up rule (the incremental decoder
// uses it, as vLLM's detokenizer does).
func (t *Tokenizer) decodeRaw(ids []int32, skipSpecialTokens bool) string {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.idToToken) {
			continue
		}
		if skipSpecialTokens && t.special[id] {
			continue
		}
		tokens = append(tokens, t.idToToken[id])
	}
	if t.decoder == nil {
		return strings.Join(tokens, " ")
	}
	return strings.Join(t.decoder.decodeChain(tokens), "")
}

// VocabSize is the number of ids, added tokens included (the largest id
// plus one).
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// TokenToID returns the id of a token spelled as in tokenizer.json
// (e.g. "▁the", "Ġthe", "<|im_end|>").
func (t *Tokenizer) TokenToID(s string) (int32, bool) {
	id, ok := t.tokenToID[s]
	return id, ok
}

// IDToToken returns the tokenizer.json spelling of id, or "" when unknown.
func (t *Tokenizer) IDToToken(id int32) string {
	if id < 0 || int(id) >= len(t.idToToken) {
		return ""
	}
	return t.idToToken[id]
}

// IsSpecial tells whether id is a special token (skipped by Decode with
// skipSpecialTokens).
func (t *Tokenizer) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(t.special) && t.special[id]
}

// BOSTokenID returns the beginning-of-sequence token: bos_token of
// tokenizer_config.json, else the token the post-processor prepends, else
// bos_token_id of generation_config.json.
func (t *Tokenizer) BOSTokenID() (int32, bool) { return t.bos, t.bos >= 0 }

// EOSTokenIDs returns the end-of-sequence tokens: eos_token of
// tokenizer_config.json followed by eos_token_id of generation_config.json.
func (t *Tokenizer) EOSTokenIDs() []int32 { return slices.Clone(t.eos) }

// ChatTemplate returns the default chat template, or nil when there is none.
func (t *Tokenizer) ChatTemplate() *ChatTemplate { return t.chat }

// NamedChatTemplate returns a template of the list-of-named-templates form
// of chat_template (e.g. "tool_use"); "default" is the default one.
func (t *Tokenizer) NamedChatTemplate(name string) *ChatTemplate { return t.namedChats[name] }
