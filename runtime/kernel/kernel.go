package kernel

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// DType is the element type of a Buffer.
type DType uint8

const (
	F32 DType = iota
	F16
	BF16
	I32
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case I32:
		return "i32"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the element size in bytes.
func (d DType) Size() int {
	switch d {
	case F16, BF16:
		return 2
	}
	return 4
}

// Buffer is a range of backend memory holding Len elements of one DType.
// Buffers are owned by the backend that made them; Slice views share memory.
type Buffer interface {
	DType() DType
	Len() int
	// Slice returns a view of elements [off, off+n).
	Slice(off, n int) Buffer
}

// AttentionMeta describes one step's flat batch for paged attention. The
// batch concatenates the query tokens of NumSeqs sequences (prefill chunks
// and single-token decodes mixed); sequence i owns query rows
// QueryStart[i]..QueryStart[i+1] and attends causally over SeqLens[i] cached
// positions, the last (QueryStart[i+1]-QueryStart[i]) of them being its own
// query tokens. The int32 buffers live on the backend (uploaded once a step).
type AttentionMeta struct {
	NumTokens       int
	NumSeqs         int
	QueryStart      Buffer // I32 [NumSeqs+1]
	SeqLens         Buffer // I32 [NumSeqs]
	BlockTables     Buffer // I32 [NumSeqs*MaxBlocksPerSeq]; unused entries are 0 (the null block)
	MaxBlocksPerSeq int
	MaxQueryLen     int
	MaxSeqLen       int
	BlockSize       int
	NumHeads        int
	NumKVHeads      int
	HeadDim         int
	Scale           float32
}

// KV cache layout (one layer): [numBlocks][NumKVHeads][BlockSize][HeadDim]
// for keys and the same for values. Slot s of the flat slot mapping is
// block s/BlockSize, offset s%BlockSize; slot -1 means "do not store".

// SampleParams are one row's sampling parameters (see runtime/sample for
// the semantics shared by every backend).
type SampleParams struct {
	Temperature       float32 // 0 = greedy
	TopP              float32 // 1 = off
	TopK              int     // <= 0 = off
	MinP              float32 // 0 = off
	RepetitionPenalty float32 // 1 = off
	PresencePenalty   float32
	FrequencyPenalty  float32
	Seed              uint64 // per-request seed
	Offset            uint64 // index of the token being sampled within the request (RNG counter)
	NumLogprobs       int    // < 0: none; 0: sampled token only; k: plus top k
}

// SampleBatch is the host-side description of one sampling call.
type SampleBatch struct {
	Rows []SampleParams
	// PromptTokens[i] and OutputTokens[i] feed the penalties of row i.
	PromptTokens [][]int32
	OutputTokens [][]int32
	// LogitBias[i] is added to row i's logits (nil: none). Masked ids
	// (min_tokens) are given -Inf here by the caller.
	LogitBias []map[int32]float32
}

// SampleResult receives one token per row, with logprobs when asked.
type SampleResult struct {
	Tokens      []int32
	Logprobs    []float32 // logprob of the sampled token (raw, before penalties/temperature)
	Ranks       []int     // 1-based rank of the sampled token in the raw distribution
	TopIDs      [][]int32
	TopLogprobs [][]float32
}

// Reset sizes every slice of r for a batch of rows, reusing capacity: one
// token, logprob and rank per row (logprob and rank zeroed) and
// rows[i].NumLogprobs top entries for row i. Backends call it at the start
// of Sample, serially, so that row workers only write elements.
func (r *SampleResult) Reset(rows []SampleParams) {
	n := len(rows)
	r.Tokens = resize(r.Tokens, n)
	r.Logprobs = resize(r.Logprobs, n)
	r.Ranks = resize(r.Ranks, n)
	r.TopIDs = resize(r.TopIDs, n)
	r.TopLogprobs = resize(r.TopLogprobs, n)
	for i := range rows {
		k := max(rows[i].NumLogprobs, 0)
		r.TopIDs[i] = resize(r.TopIDs[i], k)
		r.TopLogprobs[i] = resize(r.TopLogprobs[i], k)
		r.Logprobs[i] = 0
		r.Ranks[i] = 0
	}
}

// resize returns s with length n, reusing its capacity when it can.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// Backend is the small set of operations the model forward pass and the
// runner need. Ops may run asynchronously; Sync waits for all of them. All
// activations use ComputeDType; weights may be F32, F16 or BF16.
type Backend interface {
	Name() string
	ComputeDType() DType
	Close() error

	// Memory.
	Alloc(dt DType, n int) (Buffer, error)
	Free(b Buffer)
	// Upload copies src ([]float32, []int32 or []uint16 raw f16/bf16 bits,
	// matching dst's DType) into dst starting at element 0. len(src) may
	// be less than dst.Len(); more is an error, as is a mismatched type.
	Upload(dst Buffer, src any) error
	// Download copies all of src into dst ([]float32 or []int32; []uint16
	// raw bits for F16/BF16). dst must hold at least src.Len() elements.
	Download(dst any, src Buffer) error
	Sync() error

	// Model ops. Shapes are row-major; n, rows, dim are element counts.
	Embedding(out, table, ids Buffer, numTokens, dim int) error
	// MatMul computes out[m×n] = x[m×k] · wᵀ with w stored [n×k] (the
	// Hugging Face Linear layout). out must not overlap x or w.
	MatMul(out, x, w Buffer, m, n, k int) error
	AddBias(x, bias Buffer, rows, dim int) error // x[r] += bias, in place
	RMSNorm(out, x, w Buffer, rows, dim int, eps float32) error
	Add(out, a, b Buffer, n int) error
	// SiLUMul computes out[r] = silu(gate[r]) * up[r] for rows of dim.
	SiLUMul(out, gate, up Buffer, rows, dim int) error
	// RoPE rotates q [numTokens×numHeads×headDim] and k
	// [numTokens×numKVHeads×headDim] in place (rotate-half form) at the
	// given positions with invFreq [headDim/2] (scaling already applied).
	RoPE(q, k, positions, invFreq Buffer, numTokens, numHeads, numKVHeads, headDim int) error
	// ReshapeAndCache stores key and value rows [numTokens×numKVHeads×headDim]
	// into the caches at slots (I32 [numTokens]).
	ReshapeAndCache(key, value, kCache, vCache, slots Buffer, numTokens, numKVHeads, headDim, blockSize int) error
	// PagedAttention writes out [NumTokens×NumHeads×HeadDim] from q of the
	// same shape over the paged caches.
	PagedAttention(out, q, kCache, vCache Buffer, m *AttentionMeta) error
	// GatherRows copies rows[i] of x into row i of out (logits gather).
	GatherRows(out, x, rows Buffer, numRows, dim int) error
	// Sample draws one token per row of logits [len(b.Rows)×vocab] (F32)
	// into res, which it sizes with res.Reset (reusing res's capacity).
	Sample(logits Buffer, vocab int, b *SampleBatch, res *SampleResult) error
}

// HostMapper is an optional capability: a backend whose memory is host
// memory wraps bytes (e.g. a memory-mapped safetensors tensor) as a Buffer
// without copying. The bytes must stay valid for the Buffer's lifetime.
type HostMapper interface {
	MapHost(dt DType, data []byte) (Buffer, error)
}

// EventTimer is an optional capability of asynchronous devices: Mark
// records an event on the device's stream, Elapsed reports the device time
// between two recorded marks (waiting for them if needed), and ReleaseMarks
// returns marks for reuse. The runner uses it to report device time per
// step instead of host wall time.
type EventTimer interface {
	Mark() (int, error)
	Elapsed(from, to int) (time.Duration, error)
	ReleaseMarks(marks ...int)
}

// Options configure a backend when it is opened.
type Options struct {
	Device  int // device ordinal (CUDA)
	Threads int // worker threads (CPU); 0 = GOMAXPROCS
	// WeightsDType is the model's torch_dtype ("float16", "bfloat16",
	// "float32"; "" when unknown), a hint for backends that compute in 16
	// bits: CUDA computes in float16 or bfloat16 as the weights are, so
	// that no weight matrix is widened at every MatMul. The CPU ignores it.
	WeightsDType string
}

// StepShape bounds the largest step a server runs, for backends that
// reserve device memory for one step's activations before they size the
// KV cache (CUDA's StepBytes).
type StepShape struct {
	MaxTokens    int // tokens per step (--max-num-batched-tokens)
	MaxSeqs      int // sequences per step (--max-num-seqs): rows of logits
	Hidden       int
	Intermediate int
	NumHeads     int
	NumKVHeads   int
	HeadDim      int
	Vocab        int
	MaxSeqLen    int // --max-model-len
}

// OpenFunc opens a backend.
type OpenFunc func(Options) (Backend, error)

var (
	regMu    sync.RWMutex
	registry = map[string]OpenFunc{}
)

// Register makes a backend available by name. It panics on a duplicate
// name, like database/sql.Register, since that is a programming error.
func Register(name string, open OpenFunc) {
	regMu.Lock()
	defer regMu.Unlock()
	if open == nil {
		panic("kernel: Register open func is nil")
	}
	if _, dup := registry[name]; dup {
		panic("kernel: Register called twice for backend " + name)
	}
	registry[name] = open
}

// ErrUnknownBackend is returned by Open for a name nobody registered.
var ErrUnknownBackend = errors.New("kernel: unknown backend")

// Open opens the named backend.
func Open(name string, opts Options) (Backend, error) {
	regMu.RLock()
	open, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %v)", ErrUnknownBackend, name, Names())
	}
	return open(opts)
}

// Names lists the registered backends, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
