package cpu

import "sync"

// pool is a fixed set of worker goroutines that run the parts of one op
// at a time; the calling goroutine runs part 0 itself. When the pool is
// busy (another goroutine is inside an op) the caller runs every part
// inline, so concurrent use is correct, just not parallel.
type pool struct {
	mu      sync.Mutex // held while the workers run one op
	workers []chan job
	done    chan struct{}
	wg      sync.WaitGroup
}

type job struct {
	fn   func(part, parts int)
	part int
	n    int
}

func newPool(threads int) *pool {
	p := &pool{done: make(chan struct{}, threads)}
	for i := 1; i < threads; i++ {
		ch := make(chan job, 1)
		p.workers = append(p.workers, ch)
		p.wg.Add(1)
		go p.work(ch)
	}
	return p
}

func (p *pool) work(ch chan job) {
	defer p.wg.Done()
	for j := range ch {
		j.fn(j.part, j.n)
		p.done <- struct{}{}
	}
}

func (p *pool) size() int { return len(p.workers) + 1 }

// close stops the workers once the op in flight (if any) is done. It
// keeps mu locked, so later ops run inline on their caller's goroutine.
func (p *pool) close() {
	p.mu.Lock()
	for _, ch := range p.workers {
		close(ch)
	}
	p.wg.Wait()
}

// run calls fn(part, parts) for part in [0, parts), parts = min(size,
// maxParts), spreading parts over the workers, and returns when all are
// done. maxParts < 1 is treated as 1.
func (p *pool) run(maxParts int, fn func(part, parts int)) {
	parts := min(p.size(), maxParts)
	if parts <= 1 || !p.mu.TryLock() {
		parts = max(1, parts)
		for i := range parts {
			fn(i, parts)
		}
		return
	}
	defer p.mu.Unlock()
	for i := 1; i < parts; i++ {
		p.workers[i-1] <- job{fn: fn, part: i, n: parts}
	}
	fn(0, parts)
	for i := 1; i < parts; i++ {
		<-p.done
	}
}

// split returns the half-open range of part out of parts over [0, n),
// with boundaries rounded to multiples of align.
func split(n, part, parts, align int) (lo, hi int) {
	units := (n + align - 1) / align
	lo = units * part / parts * align
	hi = units * (part + 1) / parts * align
	return min(lo, n), min(hi, n)
}
