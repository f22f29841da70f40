package mirror

import (
	"testing"
	"time"
)

func TestHealth_Fail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		max       int
		fail      []string
		ok        []string
		wait      time.Duration
		wantBad   []string
		wantGood  []string
		wantCount int
	}{
		{name: "remembered", ttl: time.Minute, max: 4, fail: []string{"a"}, wantBad: []string{"a"}, wantGood: []string{"b"}, wantCount: 1},
		{name: "expires", ttl: 20 * time.Millisecond, max: 4, fail: []string{"a"}, wait: 40 * time.Millisecond, wantGood: []string{"a"}},
		{name: "cleared-by-success", ttl: time.Minute, max: 4, fail: []string{"a", "b"}, ok: []string{"a"}, wantBad: []string{"b"}, wantGood: []string{"a"}, wantCount: 1},
		{name: "bounded-evicts-oldest", ttl: time.Minute, max: 3, fail: []string{"a", "b", "c", "d", "e"}, wantBad: []string{"c", "d", "e"}, wantGood: []string{"a", "b"}, wantCount: 3},
		{name: "off", ttl: 0, max: 4, fail: []string{"a"}, wantGood: []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHealth(tc.ttl, tc.max)
			for _, id := range tc.fail {
				h.fail(id)
				time.Sleep(time.Millisecond) // distinct expiries
			}
			for _, id := range tc.ok {
				h.ok(id)
			}
			time.Sleep(tc.wait)
			for _, id := range tc.wantBad {
				if !h.bad(id) {
					t.Errorf("%s not remembered as unhealthy", id)
				}
			}
			for _, id := range tc.wantGood {
				if h.bad(id) {
					t.Errorf("%s remembered as unhealthy", id)
				}
			}
			if got := h.len(); got != tc.wantCount {
				t.Errorf("%d entries, want %d", got, tc.wantCount)
			}
		})
	}
}
