package mirror

import (
	"sync"
	"time"
)

// quarantine remembers peers that served bad bytes, for a while.
type quarantine struct {
	mu    sync.Mutex
	ttl   time.Duration
	until map[string]time.Time
}

func newQuarantine(ttl time.Duration) *quarantine {
	return &quarantine{ttl: ttl, until: map[string]time.Time{}}
}

func (q *quarantine) add(id string) {
	q.mu.Lock()
	q.until[id] = time.Now().Add(q.ttl)
	q.mu.Unlock()
}

// count returns how many peers are quarantined now (expired entries are
// dropped on the way): the gauge read at scrape.
func (q *quarantine) count() int {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, t := range q.until {
		if now.After(t) {
			delete(q.until, id)
		}
	}
	return len(q.until)
}

func (q *quarantine) has(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.until[id]
	if ok && time.Now().After(t) {
		delete(q.until, id)
		return false
	}
	return ok
}
