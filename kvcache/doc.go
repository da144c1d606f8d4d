// Package kvcache is the paged KV block manager: block bookkeeping only.
//
// It owns the block pool (block 0 is the null block, never handed out and
// never counted), an intrusive doubly linked free list that doubles as the
// eviction order (O(1) pop, append and removal from the middle, no
// allocation), per-block reference counts, and the prefix cache: a map from
// the chain hash of a full block (parent hash, the block's token ids, extra
// keys) to the blocks that hold it. Duplicate blocks with the same hash are
// allowed. Cached blocks whose reference count drops to zero stay cached in
// the free list and are evicted lazily, when they are reused.
//
// The table is keyed by the first 64 bits of the hash and chains the blocks
// that share a key, comparing full hashes on lookup, so a lookup or an
// eviction costs one small-key map operation. Check verifies every
// invariant of the pool against the live sequences (for tests and
// debugging).
//
// A request's block table lives in a Seq, which the caller owns (the
// scheduler embeds one per request), so the manager needs no per-request map.
// The KV bytes themselves live in the runtime backend; this package hands out
// block ids only. It starts no goroutines, does no I/O and is not safe for
// concurrent use: one goroutine (the engine loop) owns it.
//
// The life of a request's blocks:
//
//	hit := m.Lookup(seq, tokens)                 // prefix hits, in tokens
//	ok := m.Allocate(seq, hit, n, 0)             // hits + fresh blocks for n new tokens
//	added = m.Commit(seq, tokens, hit+n, added)  // after the step is built: cache full blocks
//	m.Uncache(added)                             // only if the step failed: its KV was never written
//	m.Free(seq)                                  // finish, abort or preemption: tail first
package kvcache
