package kvcache

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// NullBlock is the id of the null block: never allocated, freed or counted.
const NullBlock = 0

// Config configures a Manager.
type Config struct {
	BlockSize           int // tokens per block (> 0)
	NumBlocks           int // blocks including the null block (>= 2)
	EnablePrefixCaching bool
	HashAlgo            HashAlgo
	ModelID             string // model/adapter identity, mixed into every chain
}

// block is one entry of the pool. prev/next link the free list, which is
// circular with block 0 (the null block, never free) as its sentinel.
type block struct {
	prev, next int32
	ref        int32
	nextDup    int32 // next block in the same table chain (0: none)
	hashed     bool
	chainHead  bool // the table entry points at this block
	hash       BlockHash
}

// Manager is the block pool plus the prefix cache. See the package comment.
type Manager struct {
	cfg    Config
	blocks []block
	// numFree counts blocks in the free list; cachedFree those of them that
	// still hold a prefix-cache entry.
	numFree    int
	cachedFree int
	// table maps the first 8 bytes of a block hash to the first block of a
	// chain (linked by nextDup) of cached blocks with that key: duplicates of
	// one hash, and in theory distinct hashes sharing 64 bits, which lookups
	// tell apart by comparing the full hash. Small keys keep the table
	// compact and its operations cheap.
	table   map[uint64]int32
	h       *hasher
	queries uint64
	hits    uint64
}

// NewManager validates cfg and builds a pool with every usable block free.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.BlockSize <= 0 {
		return nil, fmt.Errorf("kvcache: block size must be positive, got %d", cfg.BlockSize)
	}
	if cfg.NumBlocks < 2 {
		return nil, fmt.Errorf("kvcache: need at least 2 blocks (null block + 1), got %d", cfg.NumBlocks)
	}
	if cfg.NumBlocks > 1<<31-1 {
		return nil, fmt.Errorf("kvcache: too many blocks: %d", cfg.NumBlocks)
	}
	h, err := newHasher(cfg.HashAlgo, cfg.ModelID)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, blocks: make([]block, cfg.NumBlocks), h: h}
	if cfg.EnablePrefixCaching {
		// At most one entry per block: sized once, so caching never grows it.
		m.table = make(map[uint64]int32, cfg.NumBlocks)
	}
	m.blocks[0].ref = 1 // the null block is permanently held by nobody in particular
	for id := 1; id < cfg.NumBlocks; id++ {
		m.pushFree(int32(id))
	}
	return m, nil
}

// Config returns the configuration the manager was built with.
func (m *Manager) Config() Config { return m.cfg }

// BlockSize returns the tokens per block.
func (m *Manager) BlockSize() int { return m.cfg.BlockSize }

// NumUsable returns the usable blocks (the null block excluded).
func (m *Manager) NumUsable() int { return len(m.blocks) - 1 }

// NumFree returns the blocks not held by any live request, cached or not.
func (m *Manager) NumFree() int { return m.numFree }

// NumCachedFree returns the free blocks that still hold a prefix-cache entry.
// The free list is in LRU order, cached or not, as in vLLM: a cached block's
// entry is evicted when the block is reused.
func (m *Manager) NumCachedFree() int { return m.cachedFree }

// NumHeld returns the blocks held by live requests.
func (m *Manager) NumHeld() int { return m.NumUsable() - m.numFree }

// Usage is the fraction of usable blocks held by live requests (cached but
// free blocks do not count).
func (m *Manager) Usage() float64 {
	return float64(m.NumHeld()) / float64(m.NumUsable())
}

// PrefixCacheStats returns the cumulative prefix-cache queries and hits, in
// tokens, as recorded by CountQuery.
func (m *Manager) PrefixCacheStats() (queries, hits uint64) { return m.queries, m.hits }

// CountQuery records one prefix-cache query of numTokens tokens that hit
// numHits of them. The scheduler calls it once per admitted request.
func (m *Manager) CountQuery(numTokens, numHits int) {
	m.queries += uint64(numTokens)
	m.hits += uint64(numHits)
}

// RefCount returns a block's reference count (the null block reports 1).
func (m *Manager) RefCount(id int32) int { return int(m.blocks[id].ref) }

// CachedHash returns the prefix-cache hash a block holds, if any.
func (m *Manager) CachedHash(id int32) (BlockHash, bool) {
	b := &m.blocks[id]
	return b.hash, b.hashed
}

// ---- free list: circular, sentinel is block 0 ----

func (m *Manager) pushFree(id int32) {
	b := &m.blocks[id]
	tail := m.blocks[0].prev
	b.prev, b.next = tail, 0
	m.blocks[tail].next = id
	m.blocks[0].prev = id
	m.numFree++
	if b.hashed {
		m.cachedFree++
	}
}

func (m *Manager) unlinkFree(id int32) {
	b := &m.blocks[id]
	m.blocks[b.prev].next = b.next
	m.blocks[b.next].prev = b.prev
	b.prev, b.next = 0, 0
	m.numFree--
	if b.hashed {
		m.cachedFree--
	}
}

// popFree takes the head of the free list (the least recently freed block),
// evicting its prefix-cache entry if it holds one. The caller has checked
// that a block is free.
func (m *Manager) popFree() int32 {
	id := m.blocks[0].next
	m.unlinkFree(id)
	if m.blocks[id].hashed {
		m.evict(id)
	}
	m.blocks[id].ref = 1
	return id
}

// ---- prefix-cache table with duplicate chains ----

func tableKey(h *BlockHash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// findCached returns the oldest cached block holding hash h.
func (m *Manager) findCached(h *BlockHash) (int32, bool) {
	id, ok := m.table[tableKey(h)]
	for ok && id != 0 {
		if m.blocks[id].hash == *h {
			return id, true
		}
		id = m.blocks[id].nextDup
	}
	return 0, false
}

func (m *Manager) insertCached(id int32, h *BlockHash) {
	b := &m.blocks[id]
	b.hash, b.hashed = *h, true
	k := tableKey(h)
	if head, ok := m.table[k]; ok {
		// Keep the oldest entry first: lookups return it, later ones follow.
		b.nextDup, b.chainHead = m.blocks[head].nextDup, false
		m.blocks[head].nextDup = id
		return
	}
	b.nextDup, b.chainHead = 0, true
	m.table[k] = id
}

func (m *Manager) evict(id int32) {
	b := &m.blocks[id]
	k := tableKey(&b.hash)
	switch {
	case b.chainHead && b.nextDup != 0:
		m.table[k] = b.nextDup
		m.blocks[b.nextDup].chainHead = true
	case b.chainHead:
		delete(m.table, k)
	default:
		for p := m.table[k]; p != 0; p = m.blocks[p].nextDup {
			if m.blocks[p].nextDup == id {
				m.blocks[p].nextDup = b.nextDup
				break
			}
		}
	}
	b.nextDup, b.hashed, b.chainHead, b.hash = 0, false, false, BlockHash{}
}

// ---- per-request operations ----

// Lookup finds the longest run of cached full blocks at the start of tokens
// and returns its length in tokens. It stops at the first miss and never
// covers the last token (whose logits must be computed). The hits are kept
// in seq for the next Allocate; they are not taken (ref counted) until then.
// Lookup finds nothing for a seq that already holds blocks or when prefix
// caching is off.
func (m *Manager) Lookup(seq *Seq, tokens []int32) int {
	seq.hits = seq.hits[:0]
	if m.table == nil || len(seq.blocks) > 0 || len(tokens) == 0 {
		return 0
	}
	maxBlocks := (len(tokens) - 1) / m.cfg.BlockSize
	m.ensureHashes(seq, tokens, maxBlocks)
	for i := 0; i < maxBlocks; i++ {
		id, ok := m.findCached(&seq.hashes[i])
		if !ok {
			break
		}
		seq.hits = append(seq.hits, id)
	}
	return len(seq.hits) * m.cfg.BlockSize
}

// Allocate gives seq blocks for its tokens up to numComputed+numNew (or up
// to reserveTokens when that is larger): first the hits of the preceding
// Lookup, then fresh blocks from the free list head. It does nothing and
// returns false when the free blocks do not suffice (counting the cached
// free blocks among the hits, which taking them removes from the free list).
func (m *Manager) Allocate(seq *Seq, numComputed, numNew, reserveTokens int) bool {
	if numComputed+numNew <= len(seq.blocks)*m.cfg.BlockSize && reserveTokens <= 0 && len(seq.hits) == 0 {
		return true // the common decode step: the last block has room
	}
	return m.allocate(seq, max(numComputed+numNew, reserveTokens))
}

func (m *Manager) allocate(seq *Seq, target int) bool {
	need := ceilDiv(target, m.cfg.BlockSize) - len(seq.blocks) - len(seq.hits)
	if need < 0 {
		need = 0
	}
	evictableHits := 0
	for _, id := range seq.hits {
		if m.blocks[id].ref == 0 {
			evictableHits++
		}
	}
	if need > m.numFree-evictableHits {
		return false
	}
	if len(seq.hits) > 0 {
		for _, id := range seq.hits {
			b := &m.blocks[id]
			if b.ref == 0 {
				m.unlinkFree(id)
			}
			b.ref++
		}
		seq.blocks = append(seq.blocks, seq.hits...)
		seq.numHitBlocks = len(seq.hits)
		seq.numCommitted = len(seq.hits)
		seq.hits = seq.hits[:0]
	}
	for ; need > 0; need-- {
		seq.blocks = append(seq.blocks, m.popFree())
	}
	return true
}

// CachedBlock is a block that Commit entered into the prefix cache, with
// the hash it was entered under.
type CachedBlock struct {
	ID   int32
	Hash BlockHash
}

// Commit caches the full blocks of seq among its first numComputed tokens,
// once they are scheduled for computation and nothing in the step being
// built can undo that (a request preempted while the step is built must
// not leave blocks in the cache that were never computed). It appends the
// blocks it entered to added and returns it; should the step fail, Uncache
// takes them out again. It is a no-op when prefix caching is off.
func (m *Manager) Commit(seq *Seq, tokens []int32, numComputed int, added []CachedBlock) []CachedBlock {
	if m.table != nil && (seq.numCommitted+1)*m.cfg.BlockSize <= numComputed {
		added = m.commit(seq, tokens, numComputed, added)
	}
	return added
}

func (m *Manager) commit(seq *Seq, tokens []int32, numComputed int, added []CachedBlock) []CachedBlock {
	full := numComputed / m.cfg.BlockSize
	if full > len(seq.blocks) {
		full = len(seq.blocks)
	}
	if full <= seq.numCommitted {
		return added
	}
	m.ensureHashes(seq, tokens, full)
	for i := seq.numCommitted; i < full; i++ {
		id := seq.blocks[i]
		if !m.blocks[id].hashed {
			m.insertCached(id, &seq.hashes[i])
			added = append(added, CachedBlock{ID: id, Hash: seq.hashes[i]})
		}
	}
	seq.numCommitted = full
	return added
}

// Uncache takes blocks that Commit entered out of the prefix cache again,
// when the step that was to compute their KV failed, so that no later
// request hits KV that was never written. A block whose entry was evicted
// since is left alone. The blocks stay held or free as they are.
func (m *Manager) Uncache(blocks []CachedBlock) {
	for _, cb := range blocks {
		b := &m.blocks[cb.ID]
		if !b.hashed || b.hash != cb.Hash {
			continue
		}
		if b.ref == 0 { // in the free list: no longer a cached free block
			m.cachedFree--
		}
		m.evict(cb.ID)
	}
}

// Free releases every block of seq, tail first, so that the tail of a chain
// is evicted before its head. Cached blocks keep their entries (and seq
// keeps its hashes), so a preempted request usually hits its own blocks
// when it resumes.
func (m *Manager) Free(seq *Seq) {
	for i := len(seq.blocks) - 1; i >= 0; i-- {
		id := seq.blocks[i]
		b := &m.blocks[id]
		b.ref--
		if b.ref == 0 {
			m.pushFree(id)
		}
	}
	seq.blocks = seq.blocks[:0]
	seq.hits = seq.hits[:0]
	seq.numCommitted = 0
	seq.numHitBlocks = 0
}

// Reset drops every prefix-cache entry. It works only when no block is held
// by a live request and reports whether it did.
func (m *Manager) Reset() bool {
	if m.numFree != m.NumUsable() {
		return false
	}
	if m.table != nil {
		clear(m.table)
	}
	for id := 1; id < len(m.blocks); id++ {
		b := &m.blocks[id]
		b.hashed, b.chainHead, b.hash, b.nextDup = false, false, BlockHash{}, 0
	}
	m.cachedFree = 0
	return true
}

// ensureHashes computes the chain hashes of the first n full blocks of
// tokens that seq has not hashed yet.
func (m *Manager) ensureHashes(seq *Seq, tokens []int32, n int) {
	bs := m.cfg.BlockSize
	for i := len(seq.hashes); i < n; i++ {
		parent := &m.h.root
		if i > 0 {
			parent = &seq.hashes[i-1]
		}
		seq.hashes = append(seq.hashes, m.h.block(parent, tokens[i*bs:(i+1)*bs], seq.salt, i == 0))
	}
}

// HashBlocks returns the chain hashes of the full blocks of tokens under the
// given salt (for tests and tools; the scheduler path uses Seq's cache).
func (m *Manager) HashBlocks(tokens []int32, salt string) []BlockHash {
	seq := NewSeq(salt, 0)
	m.ensureHashes(seq, tokens, len(tokens)/m.cfg.BlockSize)
	return seq.hashes
}

// Check verifies the pool's invariants against the complete list of live
// sequences: every usable block is either free or held; each held block's
// reference count equals the number of sequences holding it; no sequence
// holds a block twice or the null block; the free list is well formed and
// its counters match; every cached block is findable by its hash. It is
// O(blocks + held) and meant for tests and debugging.
func (m *Manager) Check(live []*Seq) error {
	holders := make([]int32, len(m.blocks))
	for si, s := range live {
		seen := make(map[int32]bool, len(s.blocks))
		for _, id := range s.blocks {
			if id <= NullBlock || int(id) >= len(m.blocks) {
				return fmt.Errorf("seq %d holds invalid block %d", si, id)
			}
			if seen[id] {
				return fmt.Errorf("seq %d holds block %d twice", si, id)
			}
			seen[id] = true
			holders[id]++
		}
	}
	free, cachedFree := 0, 0
	for id, prev := m.blocks[0].next, int32(0); id != 0; prev, id = id, m.blocks[id].next {
		if m.blocks[id].prev != prev {
			return fmt.Errorf("free list broken at block %d", id)
		}
		if m.blocks[id].ref != 0 {
			return fmt.Errorf("free block %d has ref count %d", id, m.blocks[id].ref)
		}
		free++
		if m.blocks[id].hashed {
			cachedFree++
		}
		if free > len(m.blocks) {
			return errors.New("free list has a cycle")
		}
	}
	if free != m.numFree || cachedFree != m.cachedFree {
		return fmt.Errorf("free list has %d blocks (%d cached), counters say %d (%d)", free, cachedFree, m.numFree, m.cachedFree)
	}
	held := 0
	for id := 1; id < len(m.blocks); id++ {
		b := &m.blocks[id]
		if b.ref != holders[id] {
			return fmt.Errorf("block %d has ref count %d but %d holders", id, b.ref, holders[id])
		}
		if b.ref > 0 {
			held++
		}
		if b.hashed {
			head := m.table[tableKey(&b.hash)]
			if b.chainHead != (head == int32(id)) {
				return fmt.Errorf("cached block %d: head flag %v, table points at %d", id, b.chainHead, head)
			}
			found := false
			for p := head; p != 0; p = m.blocks[p].nextDup {
				if p == int32(id) {
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("cached block %d is not reachable from its hash", id)
			}
		} else if b.chainHead || b.nextDup != 0 {
			return fmt.Errorf("uncached block %d is linked into the table", id)
		}
	}
	if free+held != m.NumUsable() {
		return fmt.Errorf("free %d + held %d != usable %d", free, held, m.NumUsable())
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
