package runner

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/scheduler"
)

// sample draws one token for each scheduled request that reached the end
// of its token list, appends it to the request's tokens and fills res.
func (r *Runner) sample(logits kernel.Buffer, res *scheduler.RunnerOutput) error {
	b := &r.batch
	b.Rows, b.PromptTokens, b.OutputTokens, b.LogitBias = b.Rows[:0], b.PromptTokens[:0], b.OutputTokens[:0], b.LogitBias[:0]
	var sampled []*reqState
	for _, s := range r.scheduled {
		if !s.sample {
			continue
		}
		st := s.st
		p := &st.params
		b.Rows = append(b.Rows, kernel.SampleParams{
			Temperature:       p.Temperature,
			TopP:              p.TopP,
			TopK:              p.TopK,
			MinP:              p.MinP,
			RepetitionPenalty: p.RepetitionPenalty,
			PresencePenalty:   p.PresencePenalty,
			FrequencyPenalty:  p.FrequencyPenalty,
			Seed:              st.seed,
			Offset:            uint64(st.numOutputs()),
			NumLogprobs:       p.Logprobs,
		})
		b.PromptTokens = append(b.PromptTokens, st.tokens[:st.numPrompt:st.numPrompt])
		b.OutputTokens = append(b.OutputTokens, st.tokens[st.numPrompt:len(st.tokens):len(st.tokens)])
		bias := p.LogitBias
		if st.minTokensBias != nil && st.numOutputs() < p.MinTokens {
			bias = st.minTokensBias
		}
		b.LogitBias = append(b.LogitBias, bias)
		sampled = append(sampled, st)
	}
	n := len(sampled) // the backend sizes r.res (kernel.SampleResult.Reset)
	if err := r.be.Sample(logits, r.m.Config.VocabSize, b, &r.res); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if err := r.be.Sync(); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if len(r.res.Tokens) != n {
		return fmt.Errorf("sample: backend returned %d tokens for %d rows", len(r.res.Tokens), n)
	}
	res.ReqIDs = make([]string, n)
	res.SampledTokenIDs = make([][]int32, n)
	wantLogprobs := false
	for i, st := range sampled {
		tok := r.res.Tokens[i]
		if tok < 0 || int(tok) >= r.m.Config.VocabSize {
			return fmt.Errorf("sample: token %d outside the vocabulary for request %q", tok, st.id)
		}
		st.tokens = append(st.tokens, tok)
		res.ReqIDs[i] = st.id
		res.SampledTokenIDs[i] = []int32{tok}
		wantLogprobs = wantLogprobs || st.params.Logprobs >= 0
	}
	if wantLogprobs {
		res.Logprobs = make([][]scheduler.TokenLogprobs, n)
		for i, st := range sampled {
			if st.params.Logprobs >= 0 {
				res.Logprobs[i] = []scheduler.TokenLogprobs{r.tokenLogprobs(i)}
			}
		}
	}
	return nil
}

func (r *Runner) tokenLogprobs(i int) scheduler.TokenLogprobs {
	res := &r.res
	lp := scheduler.TokenLogprobs{TokenID: res.Tokens[i]}
	if i < len(res.Logprobs) {
		lp.Logprob = res.Logprobs[i]
	}
	if i < len(res.Ranks) {
		lp.Rank = res.Ranks[i]
	}
	if i < len(res.TopIDs) && i < len(res.TopLogprobs) {
		ids, lps := res.TopIDs[i], res.TopLogprobs[i]
		lp.Top = make([]scheduler.TopLogprob, min(len(ids), len(lps)))
		for j := range lp.Top {
			lp.Top[j] = scheduler.TopLogprob{TokenID: ids[j], Logprob: lps[j]}
		}
	}
	return lp
}
