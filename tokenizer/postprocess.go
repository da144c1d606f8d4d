package tokenizer

import (
	"encoding/json"
	"fmt"
)

// postProcessor adds the special tokens of a single sequence (Encode with
// addSpecialTokens).
type postProcessor interface {
	process(ids []int32) []int32
}

type postProcessorSeq []postProcessor

func (seq postProcessorSeq) process(ids []int32) []int32 {
	for _, p := range seq {
		ids = p.process(ids)
	}
	return ids
}

// templateProcessor is TemplateProcessing's "single" template flattened to
// the ids before and after the sequence.
type templateProcessor struct {
	before, after []int32
}

func (p *templateProcessor) process(ids []int32) []int32 {
	out := make([]int32, 0, len(p.before)+len(ids)+len(p.after))
	out = append(out, p.before...)
	out = append(out, ids...)
	return append(out, p.after...)
}

type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

func parseTemplateProcessing(raw json.RawMessage) (*templateProcessor, error) {
	var v struct {
		Single        []templatePiece `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int32 `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	p := &templateProcessor{}
	seen := false
	for i, piece := range v.Single {
		switch {
		case piece.Sequence != nil:
			if seen {
				return nil, fmt.Errorf("TemplateProcessing.single has two sequences")
			}
			seen = true
		case piece.SpecialToken != nil:
			st, ok := v.SpecialTokens[piece.SpecialToken.ID]
			if !ok {
				return nil, fmt.Errorf("TemplateProcessing.single[%d]: special token %q not in special_tokens", i, piece.SpecialToken.ID)
			}
			if seen {
				p.after = append(p.after, st.IDs...)
			} else {
				p.before = append(p.before, st.IDs...)
			}
		default:
			return nil, fmt.Errorf("TemplateProcessing.single[%d]: want SpecialToken or Sequence", i)
		}
	}
	if !seen {
		return nil, fmt.Errorf("TemplateProcessing.single has no sequence")
	}
	return p, nil
}

// parsePostProcessor decodes a post_processor. ByteLevel post-processing
// only trims offsets, which vserve does not report, so it adds nothing.
func parsePostProcessor(raw json.RawMessage) (postProcessor, error) {
	typ, err := typeTag(raw)
	if err != nil || typ == "" {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := parseSequence(raw, "processors", parsePostProcessor)
		if err != nil {
			return nil, err
		}
		return postProcessorSeq(seq), nil
	case "ByteLevel":
		return nil, nil
	case "TemplateProcessing":
		return parseTemplateProcessing(raw)
	case "BertProcessing", "RobertaProcessing":
		// "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]
		var v struct {
			Cls []json.RawMessage `json:"cls"`
			Sep []json.RawMessage `json:"sep"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		cls, err1 := tokenPairID(v.Cls)
		sep, err2 := tokenPairID(v.Sep)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad cls/sep", typ)
		}
		return &templateProcessor{before: []int32{cls}, after: []int32{sep}}, nil
	}
	return nil, fmt.Errorf("post-processor type %q is not supported", typ)
}

func tokenPairID(pair []json.RawMessage) (int32, error) {
	if len(pair) != 2 {
		return 0, fmt.Errorf("want [token, id]")
	}
	var id int32
	err := json.Unmarshal(pair[1], &id)
	return id, err
}

// leadingSpecial returns the first id the post-processor adds before the
// sequence (the BOS token of Llama-style templates).
func leadingSpecial(p postProcessor) (int32, bool) {
	switch v := p.(type) {
	case *templateProcessor:
		if len(v.before) > 0 {
			return v.before[0], true
		}
	case postProcessorSeq:
		for _, q := range v {
			if id, ok := leadingSpecial(q); ok {
				return id, true
			}
		}
	}
	return 0, false
}
