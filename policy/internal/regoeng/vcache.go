package regoeng

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// flatCache is a topdown.VirtualCache (the memo of rule values during one
// evaluation) kept in flat slices and reused through a pool: a decision
// caches a handful of rule values, which OPA's own cache, a trie of hash
// maps built per evaluation, pays a dozen allocations for. Lookups are
// linear in the entries of the top frame.
type flatCache struct {
	frames  []int       // start of each frame in entries
	entries []flatEntry // the top frame's are entries[frames[len-1]:]
	terms   []*ast.Term // the refs of entries, back to back
}

type flatEntry struct {
	start, end int // the ref is terms[start:end]
	value      *ast.Term
	undefined  bool
}

var _ topdown.VirtualCache = (*flatCache)(nil)

var flatCaches = sync.Pool{New: func() any { return &flatCache{} }}

// getFlatCache returns an empty cache with one frame.
func getFlatCache() *flatCache {
	c := flatCaches.Get().(*flatCache)
	c.Push()
	return c
}

// put empties c and returns it to the pool.
func (c *flatCache) put() {
	clear(c.entries)
	clear(c.terms)
	c.frames, c.entries, c.terms = c.frames[:0], c.entries[:0], c.terms[:0]
	flatCaches.Put(c)
}

func (c *flatCache) Push() { c.frames = append(c.frames, len(c.entries)) }

func (c *flatCache) Pop() {
	n := len(c.frames) - 1
	start := c.frames[n]
	c.frames = c.frames[:n]
	if start < len(c.entries) {
		t := c.entries[start].start
		clear(c.entries[start:])
		clear(c.terms[t:])
		c.entries, c.terms = c.entries[:start], c.terms[:t]
	}
}

// find returns the index of ref in the top frame, or -1.
func (c *flatCache) find(ref ast.Ref) int {
	if len(c.frames) == 0 {
		return -1
	}
	for i := len(c.entries) - 1; i >= c.frames[len(c.frames)-1]; i-- {
		e := &c.entries[i]
		if e.end-e.start == len(ref) && ast.Ref(c.terms[e.start:e.end]).Equal(ref) {
			return i
		}
	}
	return -1
}

func (c *flatCache) Get(ref ast.Ref) (*ast.Term, bool) {
	i := c.find(ref)
	if i < 0 {
		return nil, false
	}
	if c.entries[i].undefined {
		return nil, true
	}
	return c.entries[i].value, false
}

func (c *flatCache) Put(ref ast.Ref, value *ast.Term) {
	if len(c.frames) == 0 {
		c.Push()
	}
	i := c.find(ref)
	if i < 0 {
		start := len(c.terms)
		c.terms = append(c.terms, ref...)
		c.entries = append(c.entries, flatEntry{start: start, end: len(c.terms)})
		i = len(c.entries) - 1
	}
	if value != nil {
		c.entries[i].value = value
	} else {
		c.entries[i].undefined = true
	}
}

func (c *flatCache) Keys() []ast.Ref {
	if len(c.frames) == 0 {
		return nil
	}
	var keys []ast.Ref
	for _, e := range c.entries[c.frames[len(c.frames)-1]:] {
		if e.value != nil {
			keys = append(keys, ast.Ref(c.terms[e.start:e.end]).Copy())
		}
	}
	return keys
}
