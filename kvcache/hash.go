package kvcache

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/maphash"
)

// HashAlgo selects the block hash function.
type HashAlgo int

const (
	// SHA256 is collision resistant and safe across tenants (the default).
	SHA256 HashAlgo = iota
	// Fast is a 128-bit non-cryptographic hash (two seeded maphash runs) for
	// single-tenant deployments. Its seeds are chosen per Manager, so hashes
	// are not comparable across processes.
	Fast
)

// String names the algorithm as the command line spells it.
func (a HashAlgo) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case Fast:
		return "fast"
	}
	return fmt.Sprintf("HashAlgo(%d)", int(a))
}

// BlockHash identifies the contents of a full block together with every
// block before it in its sequence (a chain hash). Fast fills the first 16
// bytes and leaves the rest zero.
type BlockHash [32]byte

// hasher computes chain hashes. It keeps a scratch buffer so that hashing
// does not allocate.
type hasher struct {
	algo    HashAlgo
	root    BlockHash // parent of every first block: derived from the model id
	seedA   maphash.Seed
	seedB   maphash.Seed
	scratch []byte
}

func newHasher(algo HashAlgo, modelID string) (*hasher, error) {
	if algo != SHA256 && algo != Fast {
		return nil, fmt.Errorf("kvcache: unknown hash algorithm %d", int(algo))
	}
	h := &hasher{algo: algo, seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed()}
	// The root mixes in the model (and adapter) identity, so that blocks of
	// different models can never alias, and the algorithm, so that the two
	// hash spaces are disjoint.
	h.root = h.sum([]byte("vserve-kv-root\x00" + algo.String() + "\x00" + modelID))
	return h, nil
}

func (h *hasher) sum(b []byte) BlockHash {
	if h.algo == SHA256 {
		return sha256.Sum256(b)
	}
	var out BlockHash
	binary.LittleEndian.PutUint64(out[0:8], maphash.Bytes(h.seedA, b))
	binary.LittleEndian.PutUint64(out[8:16], maphash.Bytes(h.seedB, b))
	return out
}

// block returns the chain hash of one full block: the parent hash, the
// block's token ids (little-endian int32) and, on the first block only, the
// per-request cache salt with its length (so that no token content can
// imitate a salt). Token blocks have a fixed size, so the encoding is
// unambiguous.
func (h *hasher) block(parent *BlockHash, tokens []int32, salt string, first bool) BlockHash {
	n := len(parent) + 4*len(tokens)
	if first {
		n += 8 + len(salt)
	}
	if cap(h.scratch) < n {
		h.scratch = make([]byte, n)
	}
	b := h.scratch[:n]
	copy(b, parent[:])
	off := len(parent)
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(b[off:], uint32(t))
		off += 4
	}
	if first {
		binary.LittleEndian.PutUint64(b[off:], uint64(len(salt)))
		off += 8
		copy(b[off:], salt)
	}
	return h.sum(b)
}
