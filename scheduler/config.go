package scheduler

import (
	"errors"
	"fmt"

	"github.com/vserve/vserve/kvcache"
)

// Defaults applied by New to zero-valued optional Config fields.
const (
	DefaultBlockSize           = 16
	DefaultMaxNumBatchedTokens = 2048
	DefaultMaxNumSeqs          = 256
	DefaultMaxSkips            = 16
)

// maxAdmitProbes bounds how many waiting requests that do not fit one
// Schedule call tries before it stops looking further down the queue, so a
// long queue of large requests costs a bounded amount per step.
const maxAdmitProbes = 8

// Errors returned by AddRequest (wrapped with details; test with errors.Is).
var (
	ErrInvalidRequest = errors.New("scheduler: invalid request")
	ErrDuplicateID    = errors.New("scheduler: duplicate request id")
	ErrContextLength  = errors.New("scheduler: prompt plus max_tokens exceeds max_model_len")
)

// withDefaults validates c and fills in the documented defaults.
func (c Config) withDefaults() (Config, error) {
	if c.MaxModelLen <= 0 {
		return c, fmt.Errorf("scheduler: MaxModelLen must be positive, got %d", c.MaxModelLen)
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.BlockSize < 0 {
		return c, fmt.Errorf("scheduler: BlockSize must be positive, got %d", c.BlockSize)
	}
	if c.NumBlocks < 2 {
		return c, fmt.Errorf("scheduler: NumBlocks must be at least 2 (null block + 1), got %d", c.NumBlocks)
	}
	if c.MaxNumBatchedTokens == 0 {
		c.MaxNumBatchedTokens = DefaultMaxNumBatchedTokens
	}
	if c.MaxNumBatchedTokens < 0 {
		return c, fmt.Errorf("scheduler: MaxNumBatchedTokens must be positive, got %d", c.MaxNumBatchedTokens)
	}
	if c.MaxNumSeqs == 0 {
		c.MaxNumSeqs = min(DefaultMaxNumSeqs, c.MaxNumBatchedTokens)
	}
	if c.MaxNumSeqs < 0 {
		return c, fmt.Errorf("scheduler: MaxNumSeqs must be positive, got %d", c.MaxNumSeqs)
	}
	if c.MaxNumBatchedTokens < c.MaxNumSeqs {
		return c, fmt.Errorf("scheduler: MaxNumBatchedTokens (%d) must be at least MaxNumSeqs (%d)", c.MaxNumBatchedTokens, c.MaxNumSeqs)
	}
	if c.LongPrefillTokenThreshold < 0 {
		return c, fmt.Errorf("scheduler: LongPrefillTokenThreshold must not be negative, got %d", c.LongPrefillTokenThreshold)
	}
	if c.Policy != PolicyFCFS && c.Policy != PolicyPriority {
		return c, fmt.Errorf("scheduler: unknown scheduling policy %d", int(c.Policy))
	}
	if c.HashAlgo != HashSHA256 && c.HashAlgo != HashFast {
		return c, fmt.Errorf("scheduler: unknown hash algorithm %d", int(c.HashAlgo))
	}
	if c.MaxSkips == 0 {
		c.MaxSkips = DefaultMaxSkips
	}
	// One request of the maximum length must fit the pool on its own, or it
	// could never finish.
	if need := ceilDiv(c.MaxModelLen, c.BlockSize); need > c.NumBlocks-1 {
		return c, fmt.Errorf("scheduler: MaxModelLen %d needs %d blocks of %d tokens but the pool has only %d usable blocks",
			c.MaxModelLen, need, c.BlockSize, c.NumBlocks-1)
	}
	return c, nil
}

func (c Config) kvConfig() kvcache.Config {
	algo := kvcache.SHA256
	if c.HashAlgo == HashFast {
		algo = kvcache.Fast
	}
	return kvcache.Config{
		BlockSize:           c.BlockSize,
		NumBlocks:           c.NumBlocks,
		EnablePrefixCaching: c.EnablePrefixCaching,
		HashAlgo:            algo,
		ModelID:             c.ModelID,
	}
}

// validateRequest checks what AddRequest promises to reject.
func (c *Config) validateRequest(r *Request) error {
	if r == nil {
		return fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if r.ID == "" {
		return fmt.Errorf("%w: empty request id", ErrInvalidRequest)
	}
	if len(r.PromptTokenIDs) == 0 {
		return fmt.Errorf("%w: request %q has an empty prompt", ErrInvalidRequest, r.ID)
	}
	for _, t := range r.PromptTokenIDs {
		if t < 0 {
			return fmt.Errorf("%w: request %q has negative token id %d", ErrInvalidRequest, r.ID, t)
		}
	}
	p := &r.Params
	if p.MaxTokens <= 0 {
		return fmt.Errorf("%w: request %q: max_tokens must be positive, got %d", ErrInvalidRequest, r.ID, p.MaxTokens)
	}
	if p.MinTokens < 0 || p.MinTokens > p.MaxTokens {
		return fmt.Errorf("%w: request %q: min_tokens must be in [0, max_tokens=%d], got %d", ErrInvalidRequest, r.ID, p.MaxTokens, p.MinTokens)
	}
	if total := len(r.PromptTokenIDs) + p.MaxTokens; total > c.MaxModelLen {
		return fmt.Errorf("%w: request %q: maximum context length is %d tokens, requested %d output tokens with %d prompt tokens (%d in total)",
			ErrContextLength, r.ID, c.MaxModelLen, p.MaxTokens, len(r.PromptTokenIDs), total)
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
