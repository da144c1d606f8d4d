package kvcache

// Seq is one request's view of the cache: its block table, the chain hashes
// of its full blocks computed so far (kept across Free, so a preempted
// request can find its own blocks again), and the hits of the last Lookup.
// The caller owns it; the Manager only reads and writes it.
type Seq struct {
	salt         string
	blocks       []int32
	hashes       []BlockHash
	hits         []int32
	numCommitted int // leading blocks already in the prefix cache
	numHitBlocks int // leading blocks that came from prefix-cache hits
}

// NewSeq returns a Seq for a request with the given cache salt, with room
// for maxBlocks blocks, their hashes and prefix hits, so that neither
// admission nor steady decoding allocates. maxBlocks <= 0 reserves nothing.
func NewSeq(salt string, maxBlocks int) *Seq {
	s := &Seq{}
	s.Init(salt, maxBlocks)
	return s
}

// Init prepares a zero Seq (for embedding in a larger struct).
func (s *Seq) Init(salt string, maxBlocks int) {
	s.salt = salt
	if maxBlocks > 0 {
		s.blocks = make([]int32, 0, maxBlocks)
		s.hashes = make([]BlockHash, 0, maxBlocks)
		s.hits = make([]int32, 0, maxBlocks)
	}
}

// Blocks returns the block table. The caller must not modify it; it stays
// valid until the next Allocate or Free of this Seq.
func (s *Seq) Blocks() []int32 { return s.blocks }

// NumBlocks returns the number of blocks held.
func (s *Seq) NumBlocks() int { return len(s.blocks) }

// NumHitBlocks returns how many of the held blocks came from prefix-cache
// hits at admission.
func (s *Seq) NumHitBlocks() int { return s.numHitBlocks }

// Salt returns the cache salt.
func (s *Seq) Salt() string { return s.salt }
