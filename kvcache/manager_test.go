package kvcache

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestManager(t testing.TB, blockSize, numBlocks int, caching bool) *Manager {
	t.Helper()
	m, err := NewManager(Config{BlockSize: blockSize, NumBlocks: numBlocks, EnablePrefixCaching: caching, ModelID: "test-model"})
	require.NoError(t, err)
	return m
}

func seqTokens(n int, base int32) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = base + int32(i)
	}
	return t
}

// admit runs lookup + allocate + commit for all of tokens, as the
// scheduler does for a prompt scheduled in one step.
func admit(t testing.TB, m *Manager, s *Seq, tokens []int32) int {
	t.Helper()
	hit := m.Lookup(s, tokens)
	require.True(t, m.Allocate(s, hit, len(tokens)-hit, 0), "allocate")
	m.Commit(s, tokens, len(tokens), nil)
	return hit
}

func TestNewManagerValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"zero block size", Config{BlockSize: 0, NumBlocks: 4}},
		{"negative block size", Config{BlockSize: -1, NumBlocks: 4}},
		{"only the null block", Config{BlockSize: 16, NumBlocks: 1}},
		{"unknown hash", Config{BlockSize: 16, NumBlocks: 4, HashAlgo: HashAlgo(7)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewManager(tc.cfg)
			assert.Error(t, err)
		})
	}
}

func TestNullBlockIsNeverHandedOutOrCounted(t *testing.T) {
	m := newTestManager(t, 4, 5, false)
	assert.Equal(t, 4, m.NumUsable())
	assert.Equal(t, 4, m.NumFree())
	s := NewSeq("", 4)
	require.True(t, m.Allocate(s, 0, 16, 0))
	assert.ElementsMatch(t, []int32{1, 2, 3, 4}, s.Blocks())
	assert.Equal(t, 0, m.NumFree())
	assert.Equal(t, 1.0, m.Usage())
	assert.False(t, m.Allocate(s, 16, 1, 0), "the null block must not be used as a fifth block")
	require.NoError(t, m.Check([]*Seq{s}))
	m.Free(s)
	assert.Equal(t, 4, m.NumFree())
	assert.Equal(t, 0.0, m.Usage())
	require.NoError(t, m.Check(nil))
}

func TestAllocateFailureHasNoSideEffects(t *testing.T) {
	m := newTestManager(t, 4, 4, true)
	a, b := NewSeq("", 0), NewSeq("", 0)
	admit(t, m, a, seqTokens(8, 0)) // 2 blocks, both cached
	m.Free(a)                       // cached but free
	require.Equal(t, 2, m.NumCachedFree())
	// b shares a's first 8 tokens: 2 hits (evictable) + needs 2 more blocks,
	// but only 1 uncached block is free besides the 2 hits.
	tokens := append(seqTokens(8, 0), seqTokens(9, 100)...)
	hit := m.Lookup(b, tokens)
	require.Equal(t, 8, hit)
	assert.False(t, m.Allocate(b, hit, len(tokens)-hit, 0))
	assert.Empty(t, b.Blocks())
	assert.Equal(t, 3, m.NumFree())
	assert.Equal(t, 2, m.NumCachedFree())
	require.NoError(t, m.Check([]*Seq{b}))
}

func TestFreeIsTailFirstSoChainTailsAreEvictedFirst(t *testing.T) {
	m := newTestManager(t, 2, 7, true)
	a := NewSeq("", 0)
	admit(t, m, a, seqTokens(6, 0)) // blocks 1,2,3 hold tokens [0,1] [2,3] [4,5]
	head := append([]int32(nil), a.Blocks()...)
	m.Free(a)
	// Free list is now 4,5,6 (never used) then 3,2,1 (tail first).
	b := NewSeq("", 0)
	require.True(t, m.Allocate(b, 0, 8, 0)) // takes 4,5,6 and then evicts 3 (a's tail)
	assert.Equal(t, []int32{4, 5, 6, head[2]}, b.Blocks())
	_, cached := m.CachedHash(head[2])
	assert.False(t, cached, "tail block evicted at reuse")
	_, cached = m.CachedHash(head[0])
	assert.True(t, cached, "head block still cached")
	c := NewSeq("", 0)
	assert.Equal(t, 4, m.Lookup(c, seqTokens(6, 0)), "the head of the chain still hits")
	require.NoError(t, m.Check([]*Seq{b}))
}

func TestLookup(t *testing.T) {
	const bs = 4
	base := seqTokens(16, 0) // 4 full blocks
	for _, tc := range []struct {
		name   string
		tokens []int32
		salt   string
		want   int
	}{
		{"identical prompt never covers the last token", base, "", 12},
		{"longer prompt hits all cached blocks", append(append([]int32(nil), base...), 99), "", 16},
		{"prompt of exactly one block hits nothing", base[:4], "", 0},
		{"one token more than a block hits the block", base[:5], "", 4},
		{"differs in block 2: stops at first miss", func() []int32 {
			t := append([]int32(nil), base...)
			t[9] = 1000
			return append(t, 5)
		}(), "", 8},
		{"differs in block 0: later equal blocks do not hit (chain)", func() []int32 {
			t := append([]int32(nil), base...)
			t[0] = 1000
			return append(t, 5)
		}(), "", 0},
		{"other salt is isolated", append(append([]int32(nil), base...), 99), "tenant-b", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t, bs, 16, true)
			a := NewSeq("", 0)
			admit(t, m, a, base)
			m.Free(a)
			s := NewSeq(tc.salt, 0)
			assert.Equal(t, tc.want, m.Lookup(s, tc.tokens))
		})
	}
}

func TestLookupDisabledOrHolding(t *testing.T) {
	m := newTestManager(t, 4, 16, false)
	a := NewSeq("", 0)
	admit(t, m, a, seqTokens(12, 0))
	b := NewSeq("", 0)
	assert.Equal(t, 0, m.Lookup(b, seqTokens(13, 0)), "caching off")

	m = newTestManager(t, 4, 16, true)
	a = NewSeq("", 0)
	admit(t, m, a, seqTokens(12, 0))
	assert.Equal(t, 0, m.Lookup(a, seqTokens(13, 0)), "a seq that holds blocks gets no hits")
}

func TestSharedBlocksAreRefCounted(t *testing.T) {
	m := newTestManager(t, 4, 16, true)
	a, b := NewSeq("", 0), NewSeq("", 0)
	admit(t, m, a, seqTokens(12, 0))
	hit := admit(t, m, b, seqTokens(13, 0))
	require.Equal(t, 12, hit)
	assert.Equal(t, 3, b.NumHitBlocks())
	for _, id := range a.Blocks() {
		assert.Equal(t, 2, m.RefCount(id))
	}
	assert.Equal(t, 4, m.NumHeld(), "3 shared + 1 of b's own")
	require.NoError(t, m.Check([]*Seq{a, b}))
	m.Free(a)
	require.NoError(t, m.Check([]*Seq{b}))
	assert.Equal(t, 4, m.NumHeld())
	m.Free(b)
	require.NoError(t, m.Check(nil))
	assert.Equal(t, 3, m.NumCachedFree(), "the 3 full blocks stay cached while free")
	assert.Equal(t, 0.0, m.Usage(), "cached but free blocks do not count as used")
}

func TestHitOnCachedFreeBlockTakesItOffTheFreeList(t *testing.T) {
	m := newTestManager(t, 4, 8, true)
	a := NewSeq("", 0)
	admit(t, m, a, seqTokens(8, 0))
	m.Free(a)
	require.Equal(t, 7, m.NumFree())
	b := NewSeq("", 0)
	admit(t, m, b, seqTokens(9, 0)) // 2 hits + 1 new
	assert.Equal(t, 4, m.NumFree())
	assert.Equal(t, 0, m.NumCachedFree())
	require.NoError(t, m.Check([]*Seq{b}))
}

func TestDuplicateBlocksAreAllowed(t *testing.T) {
	m := newTestManager(t, 4, 16, true)
	a, b := NewSeq("", 0), NewSeq("", 0)
	tokens := seqTokens(9, 0)
	// Both look up before either commits (same step): both miss.
	require.Equal(t, 0, m.Lookup(a, tokens))
	require.True(t, m.Allocate(a, 0, 9, 0))
	require.Equal(t, 0, m.Lookup(b, tokens))
	require.True(t, m.Allocate(b, 0, 9, 0))
	m.Commit(a, tokens, 9, nil)
	m.Commit(b, tokens, 9, nil)
	require.NoError(t, m.Check([]*Seq{a, b}))
	ha, _ := m.CachedHash(a.Blocks()[0])
	hb, _ := m.CachedHash(b.Blocks()[0])
	assert.Equal(t, ha, hb)
	assert.NotEqual(t, a.Blocks()[0], b.Blocks()[0])
	m.Free(a)
	m.Free(b)
	require.NoError(t, m.Check(nil))
	// Evict one duplicate by reusing free blocks until a's blocks are gone;
	// the other copy still serves hits.
	c := NewSeq("", 0)
	require.True(t, m.Allocate(c, 0, 4*(m.NumFree()-m.NumCachedFree())+4, 0))
	require.NoError(t, m.Check([]*Seq{c}))
	d := NewSeq("", 0)
	assert.Equal(t, 8, m.Lookup(d, tokens))
}

func TestResetOnlyWhenNothingHeld(t *testing.T) {
	m := newTestManager(t, 4, 8, true)
	a := NewSeq("", 0)
	admit(t, m, a, seqTokens(8, 0))
	assert.False(t, m.Reset())
	m.Free(a)
	require.Equal(t, 2, m.NumCachedFree())
	assert.True(t, m.Reset())
	assert.Equal(t, 0, m.NumCachedFree())
	b := NewSeq("", 0)
	assert.Equal(t, 0, m.Lookup(b, seqTokens(9, 0)))
	require.NoError(t, m.Check(nil))
}

func TestReserveTokens(t *testing.T) {
	m := newTestManager(t, 4, 16, false)
	s := NewSeq("", 0)
	require.True(t, m.Allocate(s, 0, 4, 13))
	assert.Equal(t, 4, s.NumBlocks(), "reserve covers 13 tokens")
	require.True(t, m.Allocate(s, 4, 9, 0))
	assert.Equal(t, 4, s.NumBlocks(), "nothing more needed")
}

func TestHashes(t *testing.T) {
	tokens := seqTokens(8, 3)
	mk := func(algo HashAlgo, model string) *Manager {
		m, err := NewManager(Config{BlockSize: 4, NumBlocks: 4, EnablePrefixCaching: true, HashAlgo: algo, ModelID: model})
		require.NoError(t, err)
		return m
	}
	sha := mk(SHA256, "m")
	h1 := sha.HashBlocks(tokens, "")
	require.Len(t, h1, 2)
	assert.Equal(t, h1, mk(SHA256, "m").HashBlocks(tokens, ""), "SHA-256 is deterministic across managers")
	assert.NotEqual(t, h1[0], mk(SHA256, "other").HashBlocks(tokens, "")[0], "model id is mixed in")
	salted := sha.HashBlocks(tokens, "salt")
	assert.NotEqual(t, h1[0], salted[0])
	assert.NotEqual(t, h1[1], salted[1], "the salt on block 0 changes the whole chain")
	assert.NotEqual(t, h1[0], h1[1])

	fast := mk(Fast, "m")
	f1 := fast.HashBlocks(tokens, "")
	assert.Equal(t, f1, fast.HashBlocks(tokens, ""), "fast is deterministic within a manager")
	assert.NotEqual(t, f1[0], fast.HashBlocks(tokens, "salt")[0])
	assert.Equal(t, [16]byte{}, [16]byte(f1[0][16:]), "fast fills 16 bytes")
	assert.Equal(t, "sha256", SHA256.String())
	assert.Equal(t, "fast", Fast.String())
}

func TestFreeListOrderIsLRU(t *testing.T) {
	m := newTestManager(t, 1, 6, false)
	var seqs []*Seq
	for i := 0; i < 5; i++ {
		s := NewSeq("", 0)
		require.True(t, m.Allocate(s, 0, 1, 0))
		seqs = append(seqs, s)
	}
	order := []int{3, 0, 4, 1, 2}
	var freed []int32
	for _, i := range order {
		freed = append(freed, seqs[i].Blocks()[0])
		m.Free(seqs[i])
	}
	s := NewSeq("", 0)
	require.True(t, m.Allocate(s, 0, 5, 0))
	assert.Equal(t, freed, s.Blocks(), "blocks are reused in the order they were freed")
}

func ExampleManager() {
	m, _ := NewManager(Config{BlockSize: 4, NumBlocks: 8, EnablePrefixCaching: true})
	prompt := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	a := NewSeq("", 3)
	hit := m.Lookup(a, prompt)
	m.Allocate(a, hit, len(prompt)-hit, 0)
	m.Commit(a, prompt, len(prompt), nil) // after the step is built
	fmt.Println("a:", hit, "hit tokens, blocks", a.Blocks())

	b := NewSeq("", 3)
	hit = m.Lookup(b, prompt)
	m.Allocate(b, hit, len(prompt)-hit, 0)
	fmt.Println("b:", hit, "hit tokens, blocks", b.Blocks(), "held", m.NumHeld())
	m.Free(a)
	m.Free(b)
	fmt.Println("free", m.NumFree(), "of", m.NumUsable(), "cached free", m.NumCachedFree())
	// Output:
	// a: 0 hit tokens, blocks [1 2 3]
	// b: 8 hit tokens, blocks [1 2 4] held 4
	// free 7 of 7 cached free 2
}

// Distinct hashes that share the 64-bit table key are told apart by the
// full hash, and evicting either keeps the other findable.
func TestTableKeyCollision(t *testing.T) {
	m := newTestManager(t, 4, 8, true)
	var h1, h2 BlockHash
	h1[0], h2[0] = 7, 7
	h1[31], h2[31] = 1, 2
	s := NewSeq("", 0)
	require.True(t, m.Allocate(s, 0, 12, 0))
	a, b, c := s.Blocks()[0], s.Blocks()[1], s.Blocks()[2]
	m.insertCached(a, &h1)
	m.insertCached(b, &h2)
	m.insertCached(c, &h1) // duplicate of h1
	require.NoError(t, m.Check([]*Seq{s}))
	got, ok := m.findCached(&h2)
	require.True(t, ok)
	assert.Equal(t, b, got)
	got, _ = m.findCached(&h1)
	assert.Equal(t, a, got, "the oldest duplicate first")
	m.evict(a)
	require.NoError(t, m.Check([]*Seq{s}))
	got, _ = m.findCached(&h1)
	assert.Equal(t, c, got)
	m.evict(b)
	_, ok = m.findCached(&h2)
	assert.False(t, ok)
	got, _ = m.findCached(&h1)
	assert.Equal(t, c, got)
	m.evict(c)
	_, ok = m.findCached(&h1)
	assert.False(t, ok)
	assert.Empty(t, m.table)
	require.NoError(t, m.Check([]*Seq{s}))
}

// TestUncacheAfterAFailedStep: the blocks a failed step entered into the
// prefix cache leave it (their KV was never written), those of earlier
// steps stay, whether the blocks are still held or were freed first.
func TestUncacheAfterAFailedStep(t *testing.T) {
	for _, freeFirst := range []bool{false, true} {
		m := newTestManager(t, 4, 16, true)
		tokens := seqTokens(13, 0)
		a := NewSeq("", 0)
		require.Equal(t, 0, m.Lookup(a, tokens))
		require.True(t, m.Allocate(a, 0, 8, 0))
		require.Len(t, m.Commit(a, tokens, 8, nil), 2, "step 1 caches two blocks")
		require.True(t, m.Allocate(a, 8, 5, 0))
		failed := m.Commit(a, tokens, 13, nil)
		require.Equal(t, []CachedBlock{{ID: a.Blocks()[2], Hash: m.HashBlocks(tokens, "")[2]}}, failed)
		if freeFirst { // the request was preempted or aborted before the failure was seen
			m.Free(a)
			assert.Equal(t, 3, m.NumCachedFree())
		}
		m.Uncache(failed) // step 2 failed
		m.Uncache(failed) // twice changes nothing more
		if !freeFirst {
			require.NoError(t, m.Check([]*Seq{a}))
			m.Free(a)
		}
		require.NoError(t, m.Check(nil))
		assert.Equal(t, 2, m.NumCachedFree())
		assert.Equal(t, 8, m.Lookup(NewSeq("", 0), tokens), "only step 1's blocks are hits")
	}
}
