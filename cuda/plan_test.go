package cuda

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/kernel/kerneltest"
	"github.com/vserve/vserve/runtime/sample"
)

func TestPlanAttention(t *testing.T) {
	llama := func(seqs, q, maxLen int) *kernel.AttentionMeta {
		return &kernel.AttentionMeta{NumSeqs: seqs, NumTokens: seqs * q, MaxQueryLen: q, MaxSeqLen: maxLen,
			BlockSize: 16, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, MaxBlocksPerSeq: (maxLen + 15) / 16}
	}
	tests := []struct {
		name              string
		m                 *kernel.AttentionMeta
		rows, tiles, nspl int
	}{
		{"decode b64 ctx4096", llama(64, 1, 4096), 4, 1, 2},
		{"decode b1 ctx4096", llama(1, 1, 4096), 4, 1, 16},
		{"decode b1 ctx100: no split under 256", llama(1, 1, 100), 4, 1, 1},
		{"prefill 512", llama(1, 512, 512), 16, 128, 1},
		{"MHA decode", &kernel.AttentionMeta{NumSeqs: 2, NumTokens: 2, MaxQueryLen: 1, MaxSeqLen: 40, BlockSize: 32,
			NumHeads: 4, NumKVHeads: 4, HeadDim: 64, MaxBlocksPerSeq: 2}, 1, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkMeta(tc.m); err != nil {
				t.Fatal(err)
			}
			p, err := planAttention(tc.m, 132)
			if err != nil {
				t.Fatal(err)
			}
			if p.rows != tc.rows || p.tiles != tc.tiles || p.numSplits != tc.nspl {
				t.Fatalf("plan %+v, want rows %d tiles %d splits %d", p, tc.rows, tc.tiles, tc.nspl)
			}
			if p.splitLen%tc.m.BlockSize != 0 || p.splitLen*p.numSplits < tc.m.MaxSeqLen || p.splitLen*(p.numSplits-1) >= tc.m.MaxSeqLen {
				t.Fatalf("splits of %d × %d do not tile %d positions", p.numSplits, p.splitLen, tc.m.MaxSeqLen)
			}
			if p.smem > attnSmemLimit || p.smem != attnSmem(p.rows, tc.m.BlockSize, tc.m.HeadDim) {
				t.Fatalf("shared memory %d", p.smem)
			}
		})
	}
	big := llama(1, 1, 64)
	big.HeadDim, big.BlockSize = 256, 32
	if _, err := planAttention(big, 132); err == nil {
		t.Error("head dim 256 with block size 32: no shared-memory error")
	}
	bad := llama(2, 1, 64)
	bad.NumKVHeads = 5
	if err := checkMeta(bad); err == nil {
		t.Error("32 heads over 5 KV heads accepted")
	}
}

func TestPlanDecode(t *testing.T) {
	meta := func(seqs, q, heads, kvHeads, hd, maxLen int) *kernel.AttentionMeta {
		return &kernel.AttentionMeta{NumSeqs: seqs, NumTokens: seqs * q, MaxQueryLen: q, MaxSeqLen: maxLen,
			BlockSize: 16, NumHeads: heads, NumKVHeads: kvHeads, HeadDim: hd, MaxBlocksPerSeq: (maxLen + 15) / 16}
	}
	tests := []struct {
		name         string
		m            *kernel.AttentionMeta
		ok           bool
		group, parts int
		minCTAs      int
	}{
		{"llama-8B b64 ctx4096", meta(64, 1, 32, 8, 128, 4096), true, 4, 5, 132 * 16},
		{"llama-8B b1 ctx4096: fills the GPU", meta(1, 1, 32, 8, 128, 4096), true, 4, 64, 3 * 132},
		{"llama-8B b16 ctx512", meta(16, 1, 32, 8, 128, 512), true, 4, 8, 1024},
		{"b1 ctx100: 64-position partitions", meta(1, 1, 32, 8, 128, 100), true, 4, 2, 16},
		{"GQA 3 uses the group-4 kernel, one partition", meta(2, 1, 6, 2, 64, 40), true, 4, 1, 4},
		{"MHA", meta(2, 1, 4, 4, 64, 40), true, 1, 1, 8},
		{"prefill", meta(1, 7, 32, 8, 128, 512), false, 0, 0, 0},
		{"head dim 96", meta(4, 1, 32, 8, 96, 512), false, 0, 0, 0},
		{"GQA 16", meta(4, 1, 32, 2, 128, 512), false, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := planDecode(tc.m, 132)
			if ok != tc.ok {
				t.Fatalf("decode path %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if decodeGroups[p.groupIdx] != tc.group || decodeHeadDims[p.headIdx] != tc.m.HeadDim || p.numParts != tc.parts {
				t.Fatalf("plan %+v: group %d parts %d, want group %d parts %d", p, decodeGroups[p.groupIdx], p.numParts, tc.group, tc.parts)
			}
			if p.partLen*p.numParts < tc.m.MaxSeqLen || p.partLen*(p.numParts-1) >= tc.m.MaxSeqLen || p.numParts > maxSplits {
				t.Fatalf("%d partitions of %d do not tile %d positions", p.numParts, p.partLen, tc.m.MaxSeqLen)
			}
			if ctas := p.numParts * tc.m.NumSeqs * tc.m.NumKVHeads; ctas < tc.minCTAs {
				t.Fatalf("%d CTAs, want at least %d", ctas, tc.minCTAs)
			}
		})
	}
	// A batch with a sequence that has no query token is not a decode batch.
	m := meta(3, 1, 32, 8, 128, 64)
	m.NumTokens = 2
	if _, ok := planDecode(m, 132); ok {
		t.Error("3 sequences with 2 tokens took the decode path")
	}
}

// TestPlanDecodeCoversBenchmarks: every decode configuration that
// BenchmarkPagedAttention times (bench/gpu/check.sh) takes the decode path
// on an H200 (132 SMs), with a grid that fills it.
func TestPlanDecodeCoversBenchmarks(t *testing.T) {
	for _, sh := range kerneltest.AttentionShapes {
		for _, batch := range []int{1, 16, 64} {
			for _, ctx := range []int{512, 4096} {
				m := &kernel.AttentionMeta{NumSeqs: batch, NumTokens: batch, MaxQueryLen: 1, MaxSeqLen: ctx, BlockSize: 16,
					NumHeads: sh.Heads, NumKVHeads: sh.KVHeads, HeadDim: sh.HeadDim, MaxBlocksPerSeq: ctx / 16}
				p, ok := planDecode(m, 132)
				if !ok {
					t.Errorf("%s b%d ctx%d: not the decode path", sh.Name, batch, ctx)
					continue
				}
				t.Logf("%s b%d ctx%d: %d partitions of %d, %d CTAs", sh.Name, batch, ctx, p.numParts, p.partLen,
					p.numParts*batch*sh.KVHeads)
			}
		}
	}
}

func TestSamplePlanPack(t *testing.T) {
	b := &kernel.SampleBatch{
		Rows: []kernel.SampleParams{
			{Temperature: 0.5, TopP: 0.9, TopK: 40, MinP: 0.1, RepetitionPenalty: 1.2, PresencePenalty: 0.3,
				FrequencyPenalty: 0.4, Seed: 1 << 40, Offset: 7, NumLogprobs: 3},
			{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1},
		},
		PromptTokens: [][]int32{{5, 6, 5}, {1}},
		OutputTokens: [][]int32{{6, 6, 9}, {2}},
		LogitBias:    []map[int32]float32{{3: -1.5}, nil},
	}
	p, err := buildSamplePlan(100, b)
	if err != nil {
		t.Fatal(err)
	}
	if !p.modified || !p.logprobs || p.maxK != 3 {
		t.Fatalf("plan flags %+v", p)
	}
	// Row 0: tokens 5 (prompt only), 6 (output ×2 and prompt), 9 (output).
	got := map[int32]int32{}
	for i := 0; i < len(p.pen); i += 2 {
		got[p.pen[i]] = p.pen[i+1]
	}
	if len(got) != 3 || got[5] != 0 || got[6] != 2 || got[9] != 1 {
		t.Fatalf("penalty entries %v", got)
	}
	// Row 1 has no penalties in effect (repetition 1, no presence or
	// frequency): no entries, raw logits used.
	if r := p.rows[1]; r.PenEnd != r.PenBegin || r.BiasEnd != r.BiasBegin {
		t.Fatalf("row 1 entries %+v", r)
	}
	buf, off := p.pack()
	le := binary.LittleEndian
	if le.Uint64(buf[0:]) != 1<<40 || le.Uint64(buf[8:]) != 7 {
		t.Fatal("seed/offset layout")
	}
	floats := []float32{0.5, 0.9, 0.1, 1.2, 0.3, 0.4}
	for j, f := range floats {
		if math.Float32frombits(le.Uint32(buf[16+4*j:])) != f {
			t.Fatalf("float field %d", j)
		}
	}
	ints := []int32{40, 3, 0, 3, 0, 1}
	for j, v := range ints {
		if int32(le.Uint32(buf[40+4*j:])) != v {
			t.Fatalf("int field %d = %d, want %d", j, int32(le.Uint32(buf[40+4*j:])), v)
		}
	}
	if off[1] != 2*sampleRowBytes || off[1]%8 != 0 || off[2]%8 != 0 || off[3]%8 != 0 {
		t.Fatalf("offsets %v", off)
	}
	if id, v := int32(le.Uint32(buf[off[2]:])), math.Float32frombits(le.Uint32(buf[off[2]+4:])); id != 3 || v != -1.5 {
		t.Fatalf("bias entry %d %v", id, v)
	}
	if n := int32(le.Uint32(buf[off[3]+4:])); n != -1 {
		t.Fatalf("row 1 NumLogprobs %d", n)
	}
}

func TestSamplePlanRejects(t *testing.T) {
	ok := kernel.SampleParams{TopP: 1, RepetitionPenalty: 1, NumLogprobs: -1}
	cases := map[string]*kernel.SampleBatch{
		"top_p 0":            {Rows: []kernel.SampleParams{{RepetitionPenalty: 1}}},
		"negative temp":      {Rows: []kernel.SampleParams{{Temperature: -1, TopP: 1, RepetitionPenalty: 1}}},
		"NaN penalty":        {Rows: []kernel.SampleParams{{TopP: 1, RepetitionPenalty: float32(math.NaN())}}},
		"token outside":      {Rows: []kernel.SampleParams{ok}, OutputTokens: [][]int32{{100}}},
		"bias +Inf":          {Rows: []kernel.SampleParams{ok}, LogitBias: []map[int32]float32{{1: float32(math.Inf(1))}}},
		"rows mismatch":      {Rows: []kernel.SampleParams{ok}, PromptTokens: [][]int32{{1}, {2}}},
		"too many logprobs":  {Rows: []kernel.SampleParams{{TopP: 1, RepetitionPenalty: 1, NumLogprobs: 101}}},
		"min_p above one":    {Rows: []kernel.SampleParams{{TopP: 1, MinP: 2, RepetitionPenalty: 1}}},
		"bias id below zero": {Rows: []kernel.SampleParams{ok}, LogitBias: []map[int32]float32{{-1: 1}}},
	}
	for name, b := range cases {
		if _, err := buildSamplePlan(100, b); !errors.Is(err, sample.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestUnpackSample(t *testing.T) {
	rows, k := 2, 2
	params := []kernel.SampleParams{{NumLogprobs: 2}, {NumLogprobs: -1}}
	words := make([]uint32, 5*rows+2*rows*k)
	words[0], words[1] = 11, 22          // tokens
	words[2*rows] = 0                    // logprob status of row 0
	words[3*rows] = 4                    // rank
	words[4*rows] = math.Float32bits(-2) // logprob
	words[5*rows], words[5*rows+1] = 7, 8
	words[5*rows+rows*k], words[5*rows+rows*k+1] = math.Float32bits(-0.5), math.Float32bits(-1)
	raw := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(raw[4*i:], w)
	}
	res := &kernel.SampleResult{}
	res.Reset(params)
	if err := unpackSample(raw, rows, k, params, res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{11, 22}) || res.Ranks[0] != 4 || res.Logprobs[0] != -2 ||
		!slices.Equal(res.TopIDs[0], []int32{7, 8}) || !slices.Equal(res.TopLogprobs[0], []float32{-0.5, -1}) || len(res.TopIDs[1]) != 0 {
		t.Fatalf("result %+v", res)
	}
	binary.LittleEndian.PutUint32(raw[4*(rows+1):], statusAllMasked)
	if err := unpackSample(raw, rows, k, params, res); !errors.Is(err, sample.ErrAllMasked) {
		t.Fatalf("status 2: %v", err)
	}
}

// TestCheckAttentionShape: the start-time check refuses exactly the
// shapes for which some batch could not be planned: the grid limit on
// sequences × KV heads, and a one-row tile over the shared memory limit
// (planAttention refuses the same shapes at a step).
func TestCheckAttentionShape(t *testing.T) {
	for _, tc := range []struct {
		kvHeads, headDim, blockSize, maxSeqs int
		err                                  string
	}{
		{8, 128, 16, 256, ""},
		{8, 256, 16, 256, ""},
		{40, 128, 16, 1638, ""},
		{40, 128, 16, 1639, "lower --max-num-seqs to 1638"},
		{8, 256, 32, 1, "use a smaller --block-size"},
	} {
		err := checkAttentionShape(tc.kvHeads, tc.headDim, tc.blockSize, tc.maxSeqs)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: got %v, want %q", tc, err, tc.err)
		}
		m := &kernel.AttentionMeta{NumSeqs: tc.maxSeqs, NumTokens: tc.maxSeqs, NumHeads: tc.kvHeads, NumKVHeads: tc.kvHeads,
			HeadDim: tc.headDim, BlockSize: tc.blockSize, MaxQueryLen: 1, MaxSeqLen: tc.blockSize, MaxBlocksPerSeq: 1}
		_, planErr := planAttention(m, 132)
		metaErr := checkMeta(m)
		if stepFails := planErr != nil || metaErr != nil; stepFails != (err != nil) {
			t.Errorf("%+v: start check %v, but at a step: plan %v, meta %v", tc, err, planErr, metaErr)
		}
	}
}
