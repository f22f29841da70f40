package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrimmer_Step(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name   string
		allocs []uint64 // cumulative, one per tick (the first is at Run's start)
		want   []bool   // trimmed at each tick after the first
		live   uint64   // live heap (default 10 MiB)
	}{
		{"idle from the start: nothing to trim", []uint64{0, 0, 0}, []bool{false, false}, 0},
		{"a burst, then quiet: one trim", []uint64{0, 40 * mib, 40 * mib, 40 * mib}, []bool{false, true, false}, 0},
		{"busy every tick: never while busy", []uint64{0, 20 * mib, 40 * mib, 60 * mib}, []bool{false, false, false}, 0},
		{"busy just at the threshold", []uint64{0, 20 * mib, 24 * mib, 27 * mib}, []bool{false, false, true}, 0},
		{"a small burst is not worth a collection", []uint64{0, 8 * mib, 8 * mib}, []bool{false, false}, 0},
		{"trickles add up to a trim", []uint64{0, 3 * mib, 6 * mib, 9 * mib, 12 * mib, 15 * mib, 18 * mib}, []bool{false, false, false, false, false, true}, 0},
		{"a second burst, a second trim", []uint64{0, 30 * mib, 30 * mib, 60 * mib, 60 * mib}, []bool{false, true, false, true}, 0},
		{"a large live heap needs more garbage for a trim", []uint64{0, 40 * mib, 40 * mib, 130 * mib, 130 * mib}, []bool{false, false, false, true}, 256 * mib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			i, trims := 0, 0
			live := tc.live
			if live == 0 {
				live = 10 * mib
			}
			tr := New(withRuntime(func() uint64 { return tc.allocs[i] }, func() { trims++ }), withLive(func() uint64 { return live }))
			tr.prev = tr.allocs()
			for k, want := range tc.want {
				i = k + 1
				if got := tr.step(); got != want {
					t.Fatalf("tick %d (allocs %d MiB): trimmed %v, want %v", k+1, tc.allocs[i]/mib, got, want)
				}
			}
			n := 0
			for _, w := range tc.want {
				if w {
					n++
				}
			}
			if trims != n {
				t.Fatalf("%d trims, want %d", trims, n)
			}
		})
	}
}

// TestTrimmer_ReturnsFreedHeap runs the real trim: garbage left by a burst
// is returned to the OS once the process is quiet.
func TestTrimmer_ReturnsFreedHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but the trim's
	var sink [][]byte
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	_ = sink
	before := readReleased()
	var trims atomic.Int32
	tr := New(WithThresholds(20*time.Millisecond, 1<<20, 16<<20), WithOnTrim(func() { trims.Add(1) }))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	go tr.Run(ctx)
	for trims.Load() == 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if trims.Load() == 0 {
		t.Fatal("no trim within 5 s of a 64 MiB burst")
	}
	if got := readReleased(); got < before+32<<20 {
		t.Fatalf("heap released to the OS %d MiB after the trim, was %d MiB: want ≥ 32 MiB more", got>>20, before>>20)
	}
}

func readReleased() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
