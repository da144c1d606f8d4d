package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpeModel is a BPE model. For byte-level tokenizers the model works on raw
// bytes: words are raw UTF-8 and vocab keys were mapped back from the
// printable byte alphabet at load time, so no per-encode byte mapping runs.
type bpeModel struct {
	vocab        map[string]int32 // token (model space) -> id
	merges       map[uint64]mergeRule
	byteIDs      [256]int32 // byte-level: id of each single byte; byte fallback: id of <0xNN>; -1 if none
	unk          int32      // -1 when there is no unk token
	fuseUnk      bool
	byteFallback bool
	byteLevel    bool
	ignoreMerges bool
	contPrefix   string
	eowSuffix    string
	// splitWords: no token has "▁" after another character, so no merge
	// can cross the start of a "▁"-prefixed word and a SentencePiece-style
	// input may be encoded (and cached) word by word with identical result.
	splitWords bool

	cache wordCache
}

type mergeRule struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

type bpeOptions struct {
	unkToken     *string
	fuseUnk      bool
	byteFallback bool
	byteLevel    bool
	ignoreMerges bool
	contPrefix   string
	eowSuffix    string
}

// newBPEModel builds the model from a vocab and merges given in the file's
// token spelling. For byte-level models tokens are converted to raw bytes.
func newBPEModel(vocab map[string]int32, merges [][2]string, o bpeOptions) (*bpeModel, error) {
	m := &bpeModel{
		vocab:        make(map[string]int32, len(vocab)),
		merges:       make(map[uint64]mergeRule, len(merges)),
		unk:          -1,
		fuseUnk:      o.fuseUnk,
		byteFallback: o.byteFallback,
		byteLevel:    o.byteLevel,
		ignoreMerges: o.ignoreMerges,
		contPrefix:   o.contPrefix,
		eowSuffix:    o.eowSuffix,
	}
	m.cache.init(maxCachedWords)
	for i := range m.byteIDs {
		m.byteIDs[i] = -1
	}
	toModel := func(tok string) string { return tok }
	if o.byteLevel {
		toModel = func(tok string) string {
			if raw, ok := byteLevelDecodeToken(tok); ok {
				return string(raw)
			}
			return tok
		}
	}
	for tok, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab[%q] = %d: negative id", tok, id)
		}
		m.vocab[toModel(tok)] = id
	}
	for b := 0; b < 256; b++ {
		key := fmt.Sprintf("<0x%02X>", b)
		if o.byteLevel {
			key = string([]byte{byte(b)})
		}
		if id, ok := m.vocab[key]; ok {
			m.byteIDs[b] = id
		}
	}
	m.splitWords = !o.byteLevel && canSplitAtMetaspace(vocab)
	if o.unkToken != nil {
		id, ok := vocab[*o.unkToken]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q is not in the vocab", *o.unkToken)
		}
		m.unk = id
	}
	for rank, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		if !okA || !okB {
			return nil, fmt.Errorf("model.merges[%d] %q %q: token not in the vocab", rank, mg[0], mg[1])
		}
		id, ok := vocab[mg[0]+mg[1]]
		if !ok {
			merged := mg[0] + mg[1]
			if o.contPrefix != "" && len(mg[1]) >= len(o.contPrefix) && mg[1][:len(o.contPrefix)] == o.contPrefix {
				merged = mg[0] + mg[1][len(o.contPrefix):]
			}
			if id, ok = vocab[merged]; !ok {
				return nil, fmt.Errorf("model.merges[%d] %q %q: merged token not in the vocab", rank, mg[0], mg[1])
			}
		}
		k := pairKey(a, b)
		if _, dup := m.merges[k]; !dup {
			m.merges[k] = mergeRule{rank: int32(rank), id: id}
		}
	}
	return m, nil
}

const metaspace = "▁"

// canSplitAtMetaspace reports whether "▁" is a token and every token has
// its "▁"s only at its start.
func canSplitAtMetaspace(vocab map[string]int32) bool {
	if _, ok := vocab[metaspace]; !ok {
		return false
	}
	for tok := range vocab {
		if strings.Contains(strings.TrimLeft(tok, metaspace), metaspace) {
			return false
		}
	}
	return true
}

// encodeWord appends the ids of one pre-token (in model space) to dst.
func (m *bpeModel) encodeWord(dst []int32, word string) []int32 {
	if word == "" {
		return dst
	}
	if m.splitWords && !(m.ignoreMerges && m.inVocab(word)) {
		start := 0
		for i := 1; i < len(word); i++ {
			if word[i] == metaspace[0] && strings.HasPrefix(word[i:], metaspace) && !strings.HasSuffix(word[:i], metaspace) {
				dst = m.encodePiece(dst, word[start:i])
				start = i
			}
		}
		return m.encodePiece(dst, word[start:])
	}
	return m.encodePiece(dst, word)
}

func (m *bpeModel) inVocab(s string) bool {
	_, ok := m.vocab[s]
	return ok
}

// encodePiece runs BPE on a piece that no merge can cross.
func (m *bpeModel) encodePiece(dst []int32, word string) []int32 {
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, id)
		}
	}
	cacheable := len(word) <= maxCachedWordLen
	if cacheable {
		if ids, ok := m.cache.get(word); ok {
			return append(dst, ids...)
		}
	}
	w := getWork()
	defer putWork(w)
	m.initialSymbols(w, word)
	m.mergeAll(w)
	start := len(dst)
	for i := 0; i >= 0 && i < len(w.syms); i = int(w.syms[i].next) {
		if w.syms[i].id >= 0 {
			dst = append(dst, w.syms[i].id)
		}
	}
	if cacheable {
		m.cache.put(word, dst[start:])
	}
	return dst
}

// symbol is one node of the doubly linked list of the word's current tokens.
type symbol struct {
	id         int32
	prev, next int32 // -1 at the ends
	dead       bool
}

type bpeWork struct {
	syms []symbol
	heap mergeHeap
}

var workPool = sync.Pool{New: func() any { return new(bpeWork) }}

func getWork() *bpeWork { return workPool.Get().(*bpeWork) }

func putWork(w *bpeWork) {
	w.syms = w.syms[:0]
	w.heap = w.heap[:0]
	workPool.Put(w)
}

func (w *bpeWork) push(id int32) {
	n := int32(len(w.syms))
	w.syms = append(w.syms, symbol{id: id, prev: n - 1, next: n + 1})
}

// initialSymbols splits the word into its first symbols: bytes for
// byte-level models, else characters, with byte fallback or unk for
// characters missing from the vocab.
func (m *bpeModel) initialSymbols(w *bpeWork, word string) {
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			id := m.byteIDs[word[i]]
			if id < 0 {
				id = m.unk
			}
			if id >= 0 {
				w.push(id)
			}
		}
		m.finishList(w)
		return
	}
	unkOpen := false
	for i := 0; i < len(word); {
		_, size := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+size]
		key := ch
		if i > 0 && m.contPrefix != "" {
			key = m.contPrefix + key
		}
		if i+size == len(word) && m.eowSuffix != "" {
			key += m.eowSuffix
		}
		if id, ok := m.vocab[key]; ok {
			w.push(id)
			unkOpen = false
		} else if m.byteFallback && m.pushBytes(w, ch) {
			unkOpen = false
		} else if m.unk >= 0 {
			if !(m.fuseUnk && unkOpen) {
				w.push(m.unk)
			}
			unkOpen = true
		}
		i += size
	}
	m.finishList(w)
}

// pushBytes pushes the <0xNN> tokens of ch; it fails when one is missing.
func (m *bpeModel) pushBytes(w *bpeWork, ch string) bool {
	for i := 0; i < len(ch); i++ {
		if m.byteIDs[ch[i]] < 0 {
			return false
		}
	}
	for i := 0; i < len(ch); i++ {
		w.push(m.byteIDs[ch[i]])
	}
	return true
}

func (m *bpeModel) finishList(w *bpeWork) {
	if n := len(w.syms); n > 0 {
		w.syms[n-1].next = -1
	}
}

// mergeAll applies merges lowest rank first, leftmost first among equal
// ranks, using a heap of candidate pairs that are revalidated when popped.
func (m *bpeModel) mergeAll(w *bpeWork) {
	syms := w.syms
	for i := 0; i+1 < len(syms); i++ {
		if r, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			w.heap = append(w.heap, mergeCand{rank: r.rank, pos: int32(i)})
		}
	}
	w.heap.init()
	for len(w.heap) > 0 {
		c := w.heap.pop()
		left := &syms[c.pos]
		if left.dead || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		r, ok := m.merges[pairKey(left.id, right.id)]
		if !ok || r.rank != c.rank {
			continue // stale candidate
		}
		left.id = r.id
		right.dead = true
		left.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = c.pos
		}
		if left.prev >= 0 {
			if r2, ok := m.merges[pairKey(syms[left.prev].id, left.id)]; ok {
				w.heap.push(mergeCand{rank: r2.rank, pos: left.prev})
			}
		}
		if left.next >= 0 {
			if r2, ok := m.merges[pairKey(left.id, syms[left.next].id)]; ok {
				w.heap.push(mergeCand{rank: r2.rank, pos: c.pos})
			}
		}
	}
}

type mergeCand struct {
	rank int32
	pos  int32
}

// mergeHeap is a binary min-heap of merge candidates ordered by rank, then
// position (leftmost first). It is hand-rolled to avoid container/heap's
// interface boxing on the hot path.
type mergeHeap []mergeCand

func (h mergeHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *mergeHeap) init() {
	for i := len(*h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(c mergeCand) {
	*h = append(*h, c)
	hh := *h
	for i := len(hh) - 1; i > 0; {
		parent := (i - 1) / 2
		if !hh.less(i, parent) {
			break
		}
		hh[i], hh[parent] = hh[parent], hh[i]
		i = parent
	}
}

func (h *mergeHeap) pop() mergeCand {
	hh := *h
	top := hh[0]
	last := len(hh) - 1
	hh[0] = hh[last]
	*h = hh[:last]
	h.down(0)
	return top
}

func (h *mergeHeap) down(i int) {
	hh := *h
	n := len(hh)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		small := l
		if r := l + 1; r < n && hh.less(r, l) {
			small = r
		}
		if !hh.less(small, i) {
			return
		}
		hh[i], hh[small] = hh[small], hh[i]
		i = small
	}
}

const (
	maxCachedWords   = 1 << 15
	maxCachedWordLen = 64
)

// wordCache maps pre-tokens to their ids. It stops growing when full, as
// HF tokenizers' cache does; it is safe for concurrent use.
type wordCache struct {
	mu    sync.RWMutex
	words map[string][]int32
	limit int
}

func (c *wordCache) init(limit int) {
	c.words = make(map[string][]int32)
	c.limit = limit
}

func (c *wordCache) get(w string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.words[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	c.mu.Lock()
	if len(c.words) < c.limit {
		// Clone the key: w is usually a slice of a request's text, which
		// the cache must not keep alive.
		c.words[strings.Clone(w)] = append([]int32(nil), ids...)
	}
	c.mu.Unlock()
}
