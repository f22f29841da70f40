// Package memtrim returns the free heap of a process that has gone quiet
// to the operating system, so a node agent's resident set at rest is its
// live data, not the high-water mark of its last burst of work.
//
// It replaces a low soft memory limit (debug.SetMemoryLimit) as the way to
// keep an idle node small: a soft limit below the working set makes the GC
// run back to back while the node works (up to half its CPU, and latency
// for everything else), whereas a trim costs one collection when the work
// is over.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults: a process is quiet when it allocates less than Quiet bytes in
// an Interval (an idle node allocates ~0.3 MiB/s: scrapes, DHT upkeep; one
// that serves a pull, tens of MiB/s); it is trimmed when it has allocated
// at least Min bytes since the last trim (less garbage than that is not
// worth a collection). An idle node is trimmed about once a minute, one
// collection of its live heap (a few milliseconds).
const (
	DefaultInterval = 5 * time.Second
	DefaultQuiet    = 4 << 20
	DefaultMin      = 16 << 20
)

// Trimmer watches the bytes a process allocates and trims it once after
// each busy stretch.
type Trimmer struct {
	interval time.Duration
	quiet    uint64
	min      uint64
	allocs   func() uint64 // cumulative bytes allocated
	live     func() uint64 // heap live after the last collection
	free     func()        // the trim
	onTrim   func()        // observer (a metric); may be nil

	prev, last uint64 // allocs at the previous tick and after the last trim
}

// Option configures a Trimmer.
type Option func(*Trimmer)

// WithThresholds sets the tick, the quiet and the worth-a-trim amounts.
func WithThresholds(interval time.Duration, quiet, min uint64) Option {
	return func(t *Trimmer) { t.interval, t.quiet, t.min = interval, quiet, min }
}

// WithOnTrim calls f after each trim.
func WithOnTrim(f func()) Option { return func(t *Trimmer) { t.onTrim = f } }

// withRuntime replaces the allocation counter and the trim (tests).
func withRuntime(allocs func() uint64, free func()) Option {
	return func(t *Trimmer) { t.allocs, t.free = allocs, free }
}

// withLive replaces the live-heap reading (tests).
func withLive(live func() uint64) Option { return func(t *Trimmer) { t.live = live } }

// New returns a Trimmer of this process.
func New(opts ...Option) *Trimmer {
	t := &Trimmer{interval: DefaultInterval, quiet: DefaultQuiet, min: DefaultMin,
		allocs: heapAllocs, live: heapLive, free: debug.FreeOSMemory}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Run ticks until ctx is done.
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	t.prev = t.allocs()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.step()
		}
	}
}

// step is one tick: trim when the last interval was quiet and enough was
// allocated since the last trim: Min, or half the live heap when that is
// more (a trim is a collection of the whole live heap: on a large heap it
// is worth only a larger amount of garbage). It reports whether it
// trimmed.
func (t *Trimmer) step() bool {
	now := t.allocs()
	busy := now-t.prev >= t.quiet
	t.prev = now
	if busy || now-t.last < max(t.min, t.live()/2) {
		return false
	}
	t.free()
	t.last = t.allocs()
	t.prev = t.last
	if t.onTrim != nil {
		t.onTrim()
	}
	return true
}

// heapLive reads the heap the last collection found live.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// heapAllocs reads the runtime's cumulative heap allocation counter (no
// stop-the-world, unlike runtime.ReadMemStats).
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
