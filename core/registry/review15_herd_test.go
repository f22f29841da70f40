package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
)

// gatedFile is a blob file whose reads wait for gate.
type gatedFile struct {
	*store.File
	gate <-chan struct{}
}

func (g gatedFile) ReadAt(p []byte, off int64) (int, error) {
	<-g.gate
	return g.File.ReadAt(p, off)
}

// TestVerifyCache_SlotFreedWakesOneWaiter (review 15): requests waiting
// for a hash slot (state with a live ctx) are woken by closing one shared
// channel, so every hash that ends wakes every waiter, and each of them
// takes v.mu (which run needs to release the next slot) and allocates a
// refused flight and an error, only for one of them to get the slot. The
// cost of a slot freed grows with the number of waiters: a peer's HEADs
// are not capped by the serve slots, so the number is the attacker's, and
// each waiter is woken once per hash ended within its grace. One slot
// freed should wake about one waiter.
func TestVerifyCache_SlotFreedWakesOneWaiter(t *testing.T) {
	const waiters = 1000
	dir := t.TempDir()
	v := newVerifyCache(1 << 16)
	v.slots = 1
	hold := make(chan struct{})  // the running hash's reads
	after := make(chan struct{}) // reads of whichever hash starts next
	var holdOnce, afterOnce sync.Once
	release := func() { holdOnce.Do(func() { close(hold) }) }
	stop := func() { release(); afterOnce.Do(func() { close(after) }) }
	defer stop()
	opened := make(chan digest.Digest, waiters+1)

	blob := func(i int, gate <-chan struct{}) (digest.Digest, fileStamp, func() (store.Content, error)) {
		b := []byte(fmt.Sprintf("review15 blob %d", i))
		d := digest.FromBytes(b)
		p := filepath.Join(dir, d.Encoded())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := store.OpenFile(p, d)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stampOf(f.OSFile())
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return d, st, func() (store.Content, error) {
			f, err := store.OpenFile(p, d)
			if err != nil {
				return nil, err
			}
			opened <- d
			return gatedFile{File: f, gate: gate}, nil
		}
	}

	// One hash holds the only slot.
	d0, st0, open0 := blob(-1, hold)
	if _, _, fl := v.state(t.Context(), d0, st0, open0); fl == nil {
		t.Fatal("no flight for the first blob")
	}
	<-opened

	// Many requests wait for a slot (a long grace, so none gives up).
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range waiters {
		d, st, open := blob(i, after)
		wg.Add(1)
		go func() { defer wg.Done(); v.state(ctx, d, st, open) }()
	}
	settle := func() uint64 { // mallocs once the process has gone still
		var ms runtime.MemStats
		var last uint64
		for still := 0; still < 5; {
			time.Sleep(20 * time.Millisecond)
			runtime.ReadMemStats(&ms)
			if ms.Mallocs-last < 50 {
				still++
			} else {
				still = 0
			}
			last = ms.Mallocs
		}
		return last
	}
	before := settle()

	// The slot frees once: one waiter takes it (its hash blocks).
	release()
	<-opened
	woke := settle() - before
	t.Logf("one slot freed with %d waiters: %d allocations", waiters, woke)
	stop()
	cancel()
	wg.Wait()
	if woke > waiters/2 {
		t.Fatalf("one slot freed cost %d allocations with %d waiters: every waiter was woken to retry (thundering herd); want O(1)", woke, waiters)
	}
}
