package runner

import (
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/scheduler"
)

// Prompt logprobs (vLLM's prompt_logprobs): the logprob of prompt token p+1
// comes from the logits at position p. Forward computes logits only for
// the rows that sample, so after sampling the runner asks the model for the
// logits of the prompt rows of requests that want them (Model.Logits, in
// chunks of the workspace's logit rows, which bounds the extra memory), and
// turns each row into log-softmax values on the host: the prompt token's
// logprob and rank and the top k. Values are raw (no penalties, bias or
// temperature), like the sampled tokens' logprobs.

// promptLogprobsState is the runner's storage for prompt logprobs,
// allocated the first time a step needs it.
type promptLogprobsState struct {
	dev  kernel.Buffer // I32 [MaxNumBatchedTokens]: flat rows to compute
	rows []int32       // host copy of the rows
	meta []promptRow   // per row: where the result goes
	host []float32     // downloaded logits [MaxLogits × vocab]
}

type promptRow struct {
	chunk  int   // index into RunnerOutput.PromptLogprobs
	target int32 // the prompt token whose logprob is wanted
	k      int   // top k
}

func (p *promptLogprobsState) free(be kernel.Backend) {
	if p.dev != nil {
		be.Free(p.dev)
		p.dev = nil
	}
}

// promptLogprobs fills res.PromptLogprobs for this step's scheduled prompt
// positions of requests that want them. It must run after sampling: it
// overwrites the step's logits.
func (r *Runner) promptLogprobs(res *scheduler.RunnerOutput) error {
	p := &r.plp
	p.rows, p.meta = p.rows[:0], p.meta[:0]
	for _, s := range r.scheduled {
		if !s.promptLogprobs {
			continue
		}
		st := s.st
		hi := min(s.end, st.numPrompt-1) // the last prompt position predicts an output
		if s.start >= hi {
			continue
		}
		chunk := len(res.PromptLogprobs)
		res.PromptLogprobs = append(res.PromptLogprobs, scheduler.PromptLogprobsChunk{
			ReqID: st.id, Start: s.start + 1, Logprobs: make([]scheduler.TokenLogprobs, 0, hi-s.start)})
		for pos := s.start; pos < hi; pos++ {
			if t := st.tokens[pos+1]; t < 0 || int(t) >= r.m.Config.VocabSize {
				return fmt.Errorf("prompt logprobs: request %q: prompt token %d outside the vocabulary", st.id, t)
			}
			p.rows = append(p.rows, int32(s.flat+pos-s.start))
			p.meta = append(p.meta, promptRow{chunk: chunk, target: st.tokens[pos+1], k: st.params.PromptLogprobs})
		}
	}
	if len(p.rows) == 0 {
		return nil
	}
	if err := r.ensurePromptLogprobs(); err != nil {
		return err
	}
	if err := r.be.Upload(p.dev, p.rows); err != nil {
		return fmt.Errorf("prompt logprobs: upload rows: %w", err)
	}
	V := r.m.Config.VocabSize
	for lo := 0; lo < len(p.rows); lo += r.ws.MaxLogits {
		n := min(r.ws.MaxLogits, len(p.rows)-lo)
		logits, err := r.m.Logits(r.ws, p.dev.Slice(lo, n), n)
		if err == nil {
			err = r.be.Sync()
		}
		if err == nil {
			err = r.be.Download(p.host[:n*V], logits)
		}
		if err != nil {
			return fmt.Errorf("prompt logprobs: %w", err)
		}
		for i, m := range p.meta[lo : lo+n] {
			c := &res.PromptLogprobs[m.chunk]
			c.Logprobs = append(c.Logprobs, rowLogprobs(p.host[i*V:(i+1)*V], m.target, m.k))
		}
	}
	return nil
}

func (r *Runner) ensurePromptLogprobs() error {
	p := &r.plp
	if p.dev != nil {
		return nil
	}
	dev, err := r.be.Alloc(kernel.I32, r.cfg.MaxNumBatchedTokens)
	if err != nil {
		return fmt.Errorf("prompt logprobs: alloc rows: %w", err)
	}
	p.dev = dev
	p.host = make([]float32, r.ws.MaxLogits*r.m.Config.VocabSize)
	return nil
}

// rowLogprobs returns the log-softmax of row at target, target's rank
// (as vLLM and the sampler count it: the logits >= target's, ties count) and the k largest entries (ties by
// lower token id), accumulating in float64.
func rowLogprobs(row []float32, target int32, k int) scheduler.TokenLogprobs {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	sum := 0.0
	for _, x := range row {
		sum += math.Exp(float64(x) - mx)
	}
	lse := mx + math.Log(sum)
	t := row[target]
	rank := 0
	for _, x := range row {
		if x >= t {
			rank++
		}
	}
	lp := scheduler.TokenLogprobs{TokenID: target, Logprob: float32(float64(t) - lse), Rank: rank}
	if k > 0 {
		top := topK(row, min(k, len(row)))
		lp.Top = make([]scheduler.TopLogprob, len(top))
		for i, id := range top {
			lp.Top[i] = scheduler.TopLogprob{TokenID: id, Logprob: float32(float64(row[id]) - lse)}
		}
	}
	return lp
}

// topK returns the ids of the k largest entries of row, largest first,
// ties by lower id (k is small: insertion into a sorted list).
func topK(row []float32, k int) []int32 {
	ids := make([]int32, 0, k)
	for j, x := range row {
		if len(ids) == k && x <= row[ids[k-1]] {
			continue
		}
		at := len(ids)
		for at > 0 && x > row[ids[at-1]] {
			at--
		}
		if len(ids) < k {
			ids = append(ids, 0)
		}
		copy(ids[at+1:], ids[at:len(ids)-1])
		ids[at] = int32(j)
	}
	return ids
}
