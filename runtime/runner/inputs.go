package runner

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
	"github.com/vserve/vserve/runtime/model"
)

// prepareInputs lays out the step's int32 inputs in r.host, uploads them in
// one call and returns the batch of views into r.dev.
//
// Layout: token ids [T] | positions [T] | slot mapping [T] | query starts
// [S+1] | sequence lengths [S] | block tables [S×B] | logit rows [L], where
// B is the largest block count of this step's sequences.
func (r *Runner) prepareInputs() (*model.Batch, error) {
	bs := r.cfg.BlockSize
	S := len(r.scheduled)
	T, B, L, maxQ, maxSeq := 0, 0, 0, 0, 0
	for _, s := range r.scheduled {
		q := s.end - s.start
		T += q
		B = max(B, (s.end+bs-1)/bs)
		maxQ, maxSeq = max(maxQ, q), max(maxSeq, s.end)
		if s.sample {
			L++
		}
	}
	h := r.host
	ids, pos, slots := h[0:T], h[T:2*T], h[2*T:3*T]
	off := 3 * T
	qStart := h[off : off+S+1]
	off += S + 1
	seqLens := h[off : off+S]
	off += S
	tables := h[off : off+S*B]
	off += S * B
	rows := h[off : off+L]
	off += L

	t, l := 0, 0
	qStart[0] = 0
	for i, s := range r.scheduled {
		st := s.st
		for p := s.start; p < s.end; p++ {
			ids[t] = st.tokens[p]
			pos[t] = int32(p)
			slots[t] = st.blockTable[p/bs]*int32(bs) + int32(p%bs)
			t++
		}
		qStart[i+1] = int32(t)
		seqLens[i] = int32(s.end)
		nb := (s.end + bs - 1) / bs
		row := tables[i*B : (i+1)*B]
		copy(row, st.blockTable[:nb])
		clear(row[nb:])
		if s.sample {
			rows[l] = int32(t - 1)
			l++
		}
	}
	for _, b := range tables {
		if b < 0 || int(b) >= r.cfg.NumBlocks {
			return nil, fmt.Errorf("runner: block id %d outside the %d KV blocks", b, r.cfg.NumBlocks)
		}
	}
	if err := r.be.Upload(r.dev, h[:off]); err != nil {
		return nil, fmt.Errorf("runner: upload inputs: %w", err)
	}
	view := func(lo, n int) kernel.Buffer { return r.dev.Slice(lo, n) }
	off = 3 * T
	b := &model.Batch{
		NumTokens:   T,
		TokenIDs:    view(0, T),
		Positions:   view(T, T),
		SlotMapping: view(2*T, T),
		NumLogits:   L,
	}
	b.Attn = kernel.AttentionMeta{
		NumSeqs:         S,
		QueryStart:      view(off, S+1),
		SeqLens:         view(off+S+1, S),
		BlockTables:     view(off+2*S+1, S*B),
		MaxBlocksPerSeq: B,
		MaxQueryLen:     maxQ,
		MaxSeqLen:       maxSeq,
	}
	b.LogitRows = view(off+2*S+1+S*B, L)
	return b, nil
}
