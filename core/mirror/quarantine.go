package mirror

import (
	"sync"
	"time"
)

// expiring is a set of peer IDs each remembered for ttl, bounded to max
// entries: when full, expired entries go first, then the one closest to
// expiry. Expired entries are dropped when met. It is what health
// (providers that failed) and quarantine (peers that served bad bytes)
// remember.
type expiring struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	until map[string]time.Time
}

func newExpiring(ttl time.Duration, max int) expiring {
	return expiring{ttl: ttl, max: max, until: map[string]time.Time{}}
}

// add remembers id for the TTL (from now); false when the TTL is off.
func (e *expiring) add(id string) bool {
	if e.ttl <= 0 {
		return false
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.until[id]; !ok && len(e.until) >= e.max {
		e.evict(now)
	}
	e.until[id] = now.Add(e.ttl)
	return true
}

// evict makes room for one entry; e.mu is held.
func (e *expiring) evict(now time.Time) {
	var oldest string
	var at time.Time
	for id, t := range e.until {
		if now.After(t) {
			delete(e.until, id)
			continue
		}
		if oldest == "" || t.Before(at) {
			oldest, at = id, t
		}
	}
	if len(e.until) >= e.max && oldest != "" {
		delete(e.until, oldest)
	}
}

// forget drops id.
func (e *expiring) forget(id string) {
	e.mu.Lock()
	delete(e.until, id)
	e.mu.Unlock()
}

// has reports whether id was added within the TTL.
func (e *expiring) has(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.until[id]
	if ok && time.Now().After(t) {
		delete(e.until, id)
		return false
	}
	return ok
}

// count returns how many IDs are remembered now (expired entries are
// dropped on the way): the gauges read at scrape.
func (e *expiring) count() int {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, t := range e.until {
		if now.After(t) {
			delete(e.until, id)
		}
	}
	return len(e.until)
}

// len returns how many IDs are held, expired or not (tests).
func (e *expiring) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.until)
}

// quarantine remembers peers that served bad bytes, for a while; bounded
// like health, so many peer identities cannot grow it without end.
type quarantine struct{ expiring }

func newQuarantine(ttl time.Duration) *quarantine {
	return &quarantine{newExpiring(ttl, defaultHealthMax)}
}
