package runner

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/model"
	"github.com/vserve/vserve/scheduler"
)

// Config sizes the runner's KV cache and step buffers. It must match the
// scheduler's Config; zero values of BlockSize, MaxNumSeqs and
// MaxNumBatchedTokens select the scheduler's defaults.
type Config struct {
	BlockSize           int // tokens per KV block
	NumBlocks           int // KV blocks including the null block 0
	MaxNumSeqs          int // sequences per step at most
	MaxNumBatchedTokens int // tokens per step at most
	MaxModelLen         int // tokens per sequence at most; 0: the model's max_position_embeddings
	// EOSTokenIDs are masked under min_tokens; nil: the model's.
	EOSTokenIDs []int32
	// Seed seeds the per-request seeds drawn for requests without one; 0
	// draws it from the runtime's random source.
	Seed uint64
}

// reqState is the persistent per-request state.
type reqState struct {
	id          string
	tokens      []int32 // prompt + sampled outputs
	numPrompt   int
	blockTable  []int32
	numComputed int
	params      scheduler.SamplingParams
	seed        uint64
	// minTokensBias is LogitBias plus -Inf for EOS and stop ids, used while
	// fewer than MinTokens outputs exist (nil when MinTokens is 0).
	minTokensBias map[int32]float32
}

func (s *reqState) numOutputs() int { return len(s.tokens) - s.numPrompt }

// Runner executes scheduler outputs on one model and backend.
type Runner struct {
	m   *model.Model
	be  kernel.Backend
	cfg Config

	kv *model.KVCache
	ws *model.Workspace

	reqs map[string]*reqState
	rng  *rand.Rand
	eos  []int32

	maxBlocksPerSeq int
	host            []int32       // staging for every int32 input of a step
	dev             kernel.Buffer // I32, same capacity as host

	// captureLogits (tests) keeps a copy of each step's logits in lastLogits.
	captureLogits bool
	lastLogits    []float32

	// prompt logprobs (allocated on first use; see promptlogprobs.go)
	plp promptLogprobsState

	// reused per step
	scheduled []scheduledSeq
	batch     kernel.SampleBatch
	res       kernel.SampleResult
}

type scheduledSeq struct {
	st         *reqState
	start, end int // positions computed this step: [start, end)
	flat       int // row of position start in the step's flat batch
	sample     bool
	// promptLogprobs: the request wants prompt logprobs and has no output
	// yet (a request resumed after its first token delivered them).
	promptLogprobs bool
}

// New allocates the KV cache and step buffers for m on be.
func New(m *model.Model, be kernel.Backend, cfg Config) (*Runner, error) {
	if cfg.MaxModelLen == 0 {
		cfg.MaxModelLen = DefaultMaxModelLen(m.Config)
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = scheduler.DefaultBlockSize
	}
	if cfg.MaxNumBatchedTokens == 0 {
		cfg.MaxNumBatchedTokens = scheduler.DefaultMaxNumBatchedTokens
	}
	if cfg.MaxNumSeqs == 0 {
		cfg.MaxNumSeqs = min(scheduler.DefaultMaxNumSeqs, cfg.MaxNumBatchedTokens)
	}
	if err := validate(cfg, m.Config); err != nil {
		return nil, err
	}
	r := &Runner{m: m, be: be, cfg: cfg, reqs: map[string]*reqState{}}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r.rng = rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	r.eos = cfg.EOSTokenIDs
	if r.eos == nil {
		r.eos = m.Config.EOSTokenIDs
	}
	r.maxBlocksPerSeq = (cfg.MaxModelLen + cfg.BlockSize - 1) / cfg.BlockSize
	var err error
	if r.kv, err = m.NewKVCache(cfg.NumBlocks, cfg.BlockSize); err != nil {
		return nil, err
	}
	maxLogits := min(cfg.MaxNumSeqs, cfg.MaxNumBatchedTokens)
	if r.ws, err = m.NewWorkspace(cfg.MaxNumBatchedTokens, maxLogits); err != nil {
		r.Close()
		return nil, err
	}
	T, S := cfg.MaxNumBatchedTokens, cfg.MaxNumSeqs
	n := 3*T + (S + 1) + S + S*r.maxBlocksPerSeq + S
	r.host = make([]int32, n)
	if r.dev, err = be.Alloc(kernel.I32, n); err != nil {
		r.Close()
		return nil, fmt.Errorf("runner: alloc inputs: %w", err)
	}
	return r, nil
}

// DefaultMaxModelLen is the longest sequence the model runs correctly:
// max_position_embeddings, capped at the sliding window when there is one.
func DefaultMaxModelLen(c *model.Config) int {
	if c.SlidingWindow > 0 {
		return min(c.MaxPositionEmbeddings, c.SlidingWindow)
	}
	return c.MaxPositionEmbeddings
}

// NumBlocksForMemory is how many KV blocks (including the null block) of
// blockSize tokens fit in budget bytes for m.
func NumBlocksForMemory(m *model.Model, blockSize int, budget int64) int {
	per := m.KVBytesPerBlock(blockSize)
	if per <= 0 {
		return 0
	}
	return int(budget / per)
}

func validate(cfg Config, mc *model.Config) error {
	switch {
	case cfg.BlockSize <= 0:
		return fmt.Errorf("runner: BlockSize %d must be positive", cfg.BlockSize)
	case cfg.NumBlocks < 2:
		return fmt.Errorf("runner: NumBlocks %d must be at least 2 (block 0 is the null block)", cfg.NumBlocks)
	case cfg.MaxNumSeqs <= 0:
		return fmt.Errorf("runner: MaxNumSeqs %d must be positive", cfg.MaxNumSeqs)
	case cfg.MaxNumBatchedTokens <= 0:
		return fmt.Errorf("runner: MaxNumBatchedTokens %d must be positive", cfg.MaxNumBatchedTokens)
	case cfg.MaxModelLen <= 0:
		return fmt.Errorf("runner: MaxModelLen %d must be positive", cfg.MaxModelLen)
	case cfg.MaxModelLen > mc.MaxPositionEmbeddings:
		return fmt.Errorf("runner: MaxModelLen %d exceeds the model's max_position_embeddings %d", cfg.MaxModelLen, mc.MaxPositionEmbeddings)
	case mc.SlidingWindow > 0 && cfg.MaxModelLen > mc.SlidingWindow:
		return fmt.Errorf("runner: MaxModelLen %d exceeds the model's sliding window %d, which this runtime does not implement: use a max model length of at most %d",
			cfg.MaxModelLen, mc.SlidingWindow, mc.SlidingWindow)
	}
	return nil
}

// Close frees the KV cache and buffers. The model stays loaded.
func (r *Runner) Close() error {
	if r.kv != nil {
		r.kv.Free()
		r.kv = nil
	}
	if r.ws != nil {
		r.ws.Free()
		r.ws = nil
	}
	if r.dev != nil {
		r.be.Free(r.dev)
		r.dev = nil
	}
	r.plp.free(r.be)
	r.reqs = nil
	return nil
}

// NumRequests is the number of requests whose state the runner holds.
func (r *Runner) NumRequests() int { return len(r.reqs) }

// Tokens returns a copy of the token list (prompt + outputs) held for id.
func (r *Runner) Tokens(id string) ([]int32, bool) {
	s, ok := r.reqs[id]
	if !ok {
		return nil, false
	}
	return append([]int32(nil), s.tokens...), true
}

// ErrClosed is returned by Execute after Close.
var ErrClosed = errors.New("runner: closed")

// Execute applies out's diffs, runs the scheduled tokens through the model
// and samples one token for every request whose scheduled tokens reach the
// end of its token list.
func (r *Runner) Execute(out *scheduler.Output) (*scheduler.RunnerOutput, error) {
	if r.reqs == nil {
		return nil, ErrClosed
	}
	t0 := time.Now()
	res := &scheduler.RunnerOutput{Step: out.Step}
	if err := r.applyDiffs(out); err != nil {
		return nil, err
	}
	if err := r.collectScheduled(out); err != nil {
		return nil, err
	}
	if len(r.scheduled) == 0 {
		res.Timing.Prepare = time.Since(t0)
		return res, nil
	}
	batch, err := r.prepareInputs()
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	res.Timing.Prepare = t1.Sub(t0)
	dev := r.startDeviceTiming()
	logits, err := r.m.Forward(r.ws, r.kv, batch)
	dev.mark(1)
	if err == nil {
		err = r.be.Sync()
	}
	if err != nil {
		dev.release()
		return nil, fmt.Errorf("runner: step %d: %w", out.Step, err)
	}
	t2 := time.Now()
	res.Timing.Forward = t2.Sub(t1)
	for _, s := range r.scheduled {
		s.st.numComputed = s.end
	}
	if r.captureLogits && batch.NumLogits > 0 {
		r.lastLogits = make([]float32, batch.NumLogits*r.m.Config.VocabSize)
		if err := r.be.Download(r.lastLogits, logits); err != nil {
			return nil, fmt.Errorf("runner: step %d: %w", out.Step, err)
		}
	}
	if batch.NumLogits > 0 {
		if err := r.sample(logits, res); err != nil {
			dev.release()
			return nil, fmt.Errorf("runner: step %d: %w", out.Step, err)
		}
	}
	// After sampling: prompt logprobs reuse the logits buffer.
	if err := r.promptLogprobs(res); err != nil {
		dev.release()
		return nil, fmt.Errorf("runner: step %d: %w", out.Step, err)
	}
	res.Timing.Sample = time.Since(t2)
	dev.mark(2)
	dev.apply(&res.Timing)
	return res, nil
}

// deviceTiming measures a step's forward and sampling time with the
// backend's events when it has the kernel.EventTimer capability; without
// it every method is a no-op and the host wall times stand.
type deviceTiming struct {
	timer kernel.EventTimer
	marks [3]int
	ok    [3]bool
}

func (r *Runner) startDeviceTiming() deviceTiming {
	t, _ := r.be.(kernel.EventTimer)
	d := deviceTiming{timer: t}
	d.mark(0)
	return d
}

func (d *deviceTiming) mark(i int) {
	if d.timer == nil {
		return
	}
	m, err := d.timer.Mark()
	d.marks[i], d.ok[i] = m, err == nil
}

// apply replaces the host times of forward and sampling with device times
// where both marks of a span were recorded, then releases the marks.
func (d *deviceTiming) apply(t *scheduler.StepTiming) {
	if d.timer == nil {
		return
	}
	if d.ok[0] && d.ok[1] {
		if e, err := d.timer.Elapsed(d.marks[0], d.marks[1]); err == nil {
			t.Forward = e
		}
	}
	if d.ok[1] && d.ok[2] {
		if e, err := d.timer.Elapsed(d.marks[1], d.marks[2]); err == nil {
			t.Sample = e
		}
	}
	d.release()
}

func (d *deviceTiming) release() {
	if d.timer == nil {
		return
	}
	for i, ok := range d.ok {
		if ok {
			d.timer.ReleaseMarks(d.marks[i])
			d.ok[i] = false
		}
	}
}

// applyDiffs drops finished requests and applies new and cached ones.
func (r *Runner) applyDiffs(out *scheduler.Output) error {
	for _, id := range out.FinishedRequestIDs {
		delete(r.reqs, id)
	}
	for i := range out.NewRequests {
		nr := &out.NewRequests[i]
		if nr.Params == nil {
			return fmt.Errorf("runner: step %d: new request %q has no sampling params", out.Step, nr.ID)
		}
		st := &reqState{
			id:          nr.ID,
			tokens:      append(make([]int32, 0, len(nr.PromptTokenIDs)+16), nr.PromptTokenIDs...),
			numPrompt:   len(nr.PromptTokenIDs),
			blockTable:  append([]int32(nil), nr.BlockIDs...),
			numComputed: nr.NumComputedTokens,
			params:      *nr.Params,
		}
		st.seed = r.requestSeed(&st.params)
		st.minTokensBias = r.minTokensBias(&st.params)
		r.reqs[nr.ID] = st
	}
	for i := range out.CachedRequests {
		cr := &out.CachedRequests[i]
		st, ok := r.reqs[cr.ID]
		if !ok {
			return fmt.Errorf("runner: step %d: cached request %q is unknown", out.Step, cr.ID)
		}
		if cr.Resumed {
			st.tokens = append(st.tokens[:st.numPrompt], cr.NewTokenIDs...)
			st.blockTable = append(st.blockTable[:0], cr.NewBlockIDs...)
		} else {
			st.blockTable = append(st.blockTable, cr.NewBlockIDs...)
		}
		st.numComputed = cr.NumComputedTokens
	}
	return nil
}

func (r *Runner) requestSeed(p *scheduler.SamplingParams) uint64 {
	if p.HasSeed {
		return uint64(p.Seed)
	}
	return r.rng.Uint64()
}

// minTokensBias returns the bias used while outputs < MinTokens: the
// request's logit_bias plus -Inf for its stop ids and (unless ignore_eos)
// the EOS ids.
func (r *Runner) minTokensBias(p *scheduler.SamplingParams) map[int32]float32 {
	if p.MinTokens <= 0 {
		return nil
	}
	m := make(map[int32]float32, len(p.LogitBias)+len(p.StopTokenIDs)+len(r.eos))
	for id, b := range p.LogitBias {
		m[id] = b
	}
	neg := float32(math.Inf(-1))
	for _, id := range p.StopTokenIDs {
		m[id] = neg
	}
	if !p.IgnoreEOS {
		for _, id := range r.eos {
			m[id] = neg
		}
	}
	return m
}

// collectScheduled lists the scheduled requests in the order of out
// (new requests, then cached ones) and checks their ranges.
func (r *Runner) collectScheduled(out *scheduler.Output) error {
	r.scheduled = r.scheduled[:0]
	total := 0
	add := func(id string) error {
		n := out.NumScheduledTokens[id]
		if n <= 0 {
			return nil
		}
		st := r.reqs[id]
		start, end := st.numComputed, st.numComputed+n
		if end > len(st.tokens) {
			return fmt.Errorf("runner: step %d: request %q scheduled up to position %d but holds %d tokens", out.Step, id, end, len(st.tokens))
		}
		if end > r.cfg.MaxModelLen {
			return fmt.Errorf("runner: step %d: request %q reaches %d tokens, beyond MaxModelLen %d", out.Step, id, end, r.cfg.MaxModelLen)
		}
		if need := (end + r.cfg.BlockSize - 1) / r.cfg.BlockSize; need > len(st.blockTable) {
			return fmt.Errorf("runner: step %d: request %q needs %d blocks for %d tokens, has %d", out.Step, id, need, end, len(st.blockTable))
		}
		r.scheduled = append(r.scheduled, scheduledSeq{st: st, start: start, end: end, flat: total, sample: end == len(st.tokens),
			promptLogprobs: st.params.PromptLogprobs >= 0 && len(st.tokens) == st.numPrompt})
		total += n
		return nil
	}
	for i := range out.NewRequests {
		if err := add(out.NewRequests[i].ID); err != nil {
			return err
		}
	}
	for i := range out.CachedRequests {
		if err := add(out.CachedRequests[i].ID); err != nil {
			return err
		}
	}
	switch {
	case len(r.scheduled) > r.cfg.MaxNumSeqs:
		return fmt.Errorf("runner: step %d: %d sequences exceed MaxNumSeqs %d", out.Step, len(r.scheduled), r.cfg.MaxNumSeqs)
	case total > r.cfg.MaxNumBatchedTokens:
		return fmt.Errorf("runner: step %d: %d tokens exceed MaxNumBatchedTokens %d", out.Step, total, r.cfg.MaxNumBatchedTokens)
	case out.TotalNumScheduledTokens != 0 && total != out.TotalNumScheduledTokens:
		return fmt.Errorf("runner: step %d: scheduled requests hold %d tokens, TotalNumScheduledTokens says %d", out.Step, total, out.TotalNumScheduledTokens)
	}
	return nil
}
