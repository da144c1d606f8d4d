package tracing

import "sync"

// registry holds live per-request state (llm_request spans, llm_core
// journeys) for Shutdown to end, in slots that ended ones free for later
// ones: registering and releasing writes a slot and a free-list entry,
// where a map keyed by id hashed, probed and rehashed. The hooks find
// their state without it (the HTTP layer holds its span, the scheduler
// hands the journey back); only Shutdown and the tests read it.
type registry[T registered] struct {
	mu    sync.Mutex
	items []T   // the zero T: free
	free  []int // free slots of items
}

// registered is state that remembers its slot in a registry.
type registered interface {
	comparable
	registrySlot() *int
}

func (r *registry[T]) add(s T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := s.registrySlot()
	if n := len(r.free); n > 0 {
		*slot = r.free[n-1]
		r.free = r.free[:n-1]
		r.items[*slot] = s
		return
	}
	*slot = len(r.items)
	r.items = append(r.items, s)
}

// remove releases s's slot, unless takeAll took it.
func (r *registry[T]) remove(s T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var free T
	if slot := *s.registrySlot(); slot < len(r.items) && r.items[slot] == s {
		r.items[slot] = free
		r.free = append(r.free, slot)
	}
}

// takeAll empties the registry and returns what it held, in slot order.
func (r *registry[T]) takeAll() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	var live []T
	var free T
	for _, s := range r.items {
		if s != free {
			live = append(live, s)
		}
	}
	r.items, r.free = nil, nil
	return live
}

// live is the number of registered items.
func (r *registry[T]) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items) - len(r.free)
}
