package sample

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vserve/vserve/runtime/kernel"
)

// GreedyEpsilon is the temperature below which a row is sampled greedily
// (vLLM's _SAMPLING_EPS).
const GreedyEpsilon = 1e-5

var (
	// ErrInvalid reports arguments that break the contract of Sample
	// (shapes, parameter ranges, token ids out of the vocabulary).
	ErrInvalid = errors.New("sample: invalid input")
	// ErrNonFinite reports a NaN or +Inf logit (before or after the logit
	// bias and penalties).
	ErrNonFinite = errors.New("sample: non-finite logit")
	// ErrAllMasked reports a row whose every logit is -Inf.
	ErrAllMasked = errors.New("sample: every token is masked")
)

// Sampler samples batches of logits. Its zero value is ready to use and
// it is safe for concurrent use; it keeps per-worker scratch memory in a
// pool so that steady-state calls do not allocate per row.
type Sampler struct {
	// Workers bounds the goroutines one call uses to process rows in
	// parallel; 0 means GOMAXPROCS, 1 means the calling goroutine only.
	// Results do not depend on it.
	Workers int

	pool sync.Pool
}

var defaultSampler Sampler

// Sample draws one token per row of logits (row-major [len(b.Rows)×vocab])
// with the semantics described in the package documentation, writing the
// tokens and, for rows that ask for them, the raw logprobs, ranks and top
// logprobs into res. The slices of res are resized to len(b.Rows), reusing
// their capacity. logits is not modified.
func Sample(logits []float32, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	return defaultSampler.Sample(logits, vocab, b, res)
}

// parallelMinElems is the batch size (rows×vocab) from which rows are
// spread over several goroutines.
const parallelMinElems = 1 << 16

// Sample is the method form of the package-level Sample.
func (s *Sampler) Sample(logits []float32, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	if err := validateBatch(logits, vocab, b, res); err != nil {
		return err
	}
	rows := len(b.Rows)
	res.Reset(b.Rows)
	if rows == 0 {
		return nil
	}
	workers := s.workerCount(rows, vocab)
	if workers <= 1 {
		w := s.getWorker()
		defer s.pool.Put(w)
		for i := range rows {
			if err := w.sampleRow(i, logits, vocab, b, res); err != nil {
				return err
			}
		}
		return nil
	}
	return s.sampleParallel(workers, logits, vocab, b, res)
}

func (s *Sampler) workerCount(rows, vocab int) int {
	if rows < 2 || rows*vocab < parallelMinElems {
		return 1
	}
	n := s.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return min(n, rows)
}

func (s *Sampler) getWorker() *worker {
	if w, ok := s.pool.Get().(*worker); ok {
		return w
	}
	return new(worker)
}

// sampleParallel hands rows to workers through an atomic counter. Every
// row is computed by exactly one goroutine with the same code as the serial
// path, so results are identical. The error of the lowest failing row is
// returned.
func (s *Sampler) sampleParallel(workers int, logits []float32, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		errRow   = math.MaxInt
	)
	rows := len(b.Rows)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := s.getWorker()
			defer s.pool.Put(w)
			for {
				i := int(next.Add(1) - 1)
				if i >= rows {
					return
				}
				if err := w.sampleRow(i, logits, vocab, b, res); err != nil {
					mu.Lock()
					if i < errRow {
						errRow, firstErr = i, err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// resize returns s with length n, reusing its capacity when it can.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

func validateBatch(logits []float32, vocab int, b *kernel.SampleBatch, res *kernel.SampleResult) error {
	if b == nil || res == nil {
		return fmt.Errorf("%w: nil batch or result", ErrInvalid)
	}
	if vocab <= 0 || vocab > math.MaxInt32 {
		return fmt.Errorf("%w: vocab %d out of range", ErrInvalid, vocab)
	}
	rows := len(b.Rows)
	if len(logits)%vocab != 0 || len(logits)/vocab != rows {
		return fmt.Errorf("%w: %d logits for %d rows of vocab %d", ErrInvalid, len(logits), rows, vocab)
	}
	if err := checkPerRow("PromptTokens", len(b.PromptTokens), b.PromptTokens == nil, rows); err != nil {
		return err
	}
	if err := checkPerRow("OutputTokens", len(b.OutputTokens), b.OutputTokens == nil, rows); err != nil {
		return err
	}
	if err := checkPerRow("LogitBias", len(b.LogitBias), b.LogitBias == nil, rows); err != nil {
		return err
	}
	for i := range b.Rows {
		if err := validateParams(&b.Rows[i], vocab); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if err := validateRowTokens(b, i, vocab); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
	}
	return nil
}

func checkPerRow(field string, n int, isNil bool, rows int) error {
	if !isNil && n != rows {
		return fmt.Errorf("%w: %s has %d entries for %d rows", ErrInvalid, field, n, rows)
	}
	return nil
}

// validateParams checks one row's parameters against vLLM's ranges (the
// presence and frequency penalties only need to be finite here).
func validateParams(p *kernel.SampleParams, vocab int) error {
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case !finite(p.Temperature) || p.Temperature < 0:
		return fmt.Errorf("%w: temperature %v must be finite and >= 0", ErrInvalid, p.Temperature)
	case !(p.TopP > 0 && p.TopP <= 1):
		return fmt.Errorf("%w: top_p %v must be in (0, 1]", ErrInvalid, p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return fmt.Errorf("%w: min_p %v must be in [0, 1]", ErrInvalid, p.MinP)
	case !finite(p.RepetitionPenalty) || p.RepetitionPenalty <= 0:
		return fmt.Errorf("%w: repetition_penalty %v must be finite and > 0", ErrInvalid, p.RepetitionPenalty)
	case !finite(p.PresencePenalty):
		return fmt.Errorf("%w: presence_penalty %v must be finite", ErrInvalid, p.PresencePenalty)
	case !finite(p.FrequencyPenalty):
		return fmt.Errorf("%w: frequency_penalty %v must be finite", ErrInvalid, p.FrequencyPenalty)
	case p.NumLogprobs > vocab:
		return fmt.Errorf("%w: %d logprobs asked of a vocab of %d", ErrInvalid, p.NumLogprobs, vocab)
	}
	return nil
}

func validateRowTokens(b *kernel.SampleBatch, i, vocab int) error {
	if b.PromptTokens != nil {
		if err := checkTokenIDs("prompt", b.PromptTokens[i], vocab); err != nil {
			return err
		}
	}
	if b.OutputTokens != nil {
		if err := checkTokenIDs("output", b.OutputTokens[i], vocab); err != nil {
			return err
		}
	}
	if b.LogitBias != nil {
		for id, v := range b.LogitBias[i] {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("%w: logit_bias token %d outside vocab %d", ErrInvalid, id, vocab)
			}
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) {
				return fmt.Errorf("%w: logit_bias %v for token %d (NaN and +Inf are not allowed)", ErrInvalid, v, id)
			}
		}
	}
	return nil
}

func checkTokenIDs(what string, ids []int32, vocab int) error {
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: %s token %d outside vocab %d", ErrInvalid, what, id, vocab)
		}
	}
	return nil
}
