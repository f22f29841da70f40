package registry

import (
	"context"
	"testing"
)

// TestVerifyCache_SlotTransitions: each transition of the hash-slot line
// keeps the count of slots: a free slot is taken; a release with nobody
// in line frees it; a release with a line hands it to the longest waiter
// only; a waiter whose grace ends leaves the line; one whose grace ends
// just as it was handed a slot passes the slot on (never leaks it).
func TestVerifyCache_SlotTransitions(t *testing.T) {
	t.Parallel()
	live := t.Context()
	done, cancel := context.WithCancel(live)
	cancel()

	v := newVerifyCache(16)
	v.slots = 1
	v.running = 1 // one hash runs

	if w := v.enqueue(done); w != nil {
		t.Fatal("a request past its grace (or a HEAD) got in line")
	}
	a, b := v.enqueue(live), v.enqueue(live)
	v.release() // the hash ends: a, the longest waiter, gets the slot
	if !a.granted || b.granted || v.running != 1 || len(v.waiters) != 1 {
		t.Fatalf("after a release with a line: a %v, b %v, running %d, line %d; want a only, running 1, line 1", a.granted, b.granted, v.running, len(v.waiters))
	}

	// b's grace ends while in line: it leaves, nothing is handed to it.
	if v.await(done, b) {
		t.Fatal("b, never granted, returned holding a slot")
	}
	if len(v.waiters) != 0 || v.running != 1 {
		t.Fatalf("after b left: line %d, running %d; want 0, 1", len(v.waiters), v.running)
	}

	// c waits; a's holder is done and hands the slot to c, whose grace
	// ends at the same moment: whichever way await goes, the slot is
	// either c's or passed on, never lost.
	for range 100 {
		c, d := v.enqueue(live), v.enqueue(live)
		v.release() // a's hash ends: c is granted
		if v.await(done, c) {
			v.release() // c held it and is done with it: to d
		}
		if !d.granted || v.running != 1 || len(v.waiters) != 0 {
			t.Fatalf("slot lost or doubled: d granted %v, running %d, line %d", d.granted, v.running, len(v.waiters))
		}
	}
	v.release() // d's hash ends, nobody in line
	if v.running != 0 {
		t.Fatalf("running %d after the last release, want 0", v.running)
	}
}
