package policy

import "sync"

// cache is a bounded decision cache of two generations: entries go into
// the current map; when it is full it becomes the previous one and the old
// previous one is dropped. Lookups that hit the previous generation move
// the entry back. A revision owns its cache, so a reload drops it.
type cache struct {
	mu   sync.RWMutex
	cur  map[string]cacheEntry
	prev map[string]cacheEntry
	max  int // per generation
}

type cacheEntry struct {
	d       Decision
	results []uint8 // per source, for the metrics of cached decisions
}

func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	half := max(size/2, 1)
	return &cache{cur: make(map[string]cacheEntry, half), max: half}
}

func (c *cache) get(key []byte) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	e, ok := c.cur[string(key)]
	if ok {
		c.mu.RUnlock()
		return e, true
	}
	e, ok = c.prev[string(key)]
	c.mu.RUnlock()
	if ok {
		c.put(string(key), e)
	}
	return e, ok
}

func (c *cache) put(key string, e cacheEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[string]cacheEntry, c.max)
	}
	c.cur[key] = e
	c.mu.Unlock()
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.prev)
}
