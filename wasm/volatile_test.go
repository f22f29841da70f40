package wasm_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// TestSet_VolatileWasmDecisionsNotCached checks that a Wasm guest whose
// decision depends on random bytes or on the clock is asked again on every
// decision through policy.Set, not answered from the decision cache with
// its first answer for the whole revision (issue 10 item 6, issue 15 item
// 6), and that a guest that reads neither is still cached.
func TestSet_VolatileWasmDecisionsNotCached(t *testing.T) {
	t.Parallel()
	// allowIf: allow when the i64 on the stack is even, else deny.
	allowIfEven := cat(i64Const(1), []byte{0x83, 0x50, 0x04, 0x7E}, i64Const(allowResult), []byte{0x05}, i64Const(denyResult), []byte{0x0B})
	tests := []struct {
		name     string
		guest    rawGuest
		volatile bool
	}{
		// (drop (call $random_get (i32.const 2048) (i32.const 8)))
		// allow iff (i64.load (i32.const 2048)) is even
		{"random_get", rawGuest{memory: pages(1), randomGet: true,
			decide: cat(i32Const(2048), i32Const(8), []byte{0x10, 0x00, 0x1A}, i32Const(2048), []byte{0x29, 0x03, 0x00}, allowIfEven)}, true},
		// (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 2048)))
		// allow iff (i64.div_u (i64.load (i32.const 2048)) (i64.const 1000)) is even: by the microsecond
		{"clock_time_get", rawGuest{memory: pages(1), clockGet: true,
			decide: cat(i32Const(1), i64Const(1), i32Const(2048), []byte{0x10, 0x00, 0x1A}, i32Const(2048), []byte{0x29, 0x03, 0x00},
				i64Const(1000), []byte{0x80}, allowIfEven)}, true},
		// Reads nothing but its input: cached.
		{"deterministic", rawGuest{memory: pages(1), decide: cat(i64Const(2), allowIfEven)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), tt.name+".wasm")
			if err := os.WriteFile(path, tt.guest.bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			reg := newRegistry()
			s, err := policy.Load(t.Context(), []string{path}, policy.WithRegisterer(reg),
				policy.WithWasm(wasm.Opener(wasm.WithPoolSize(1), wasm.WithCompilationCache(testCache))))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			seen := map[bool]int{}
			deadline := time.Now().Add(5 * time.Second)
			for n := 0; n < 200 || (tt.volatile && len(seen) < 2 && time.Now().Before(deadline)); n++ {
				d, err := s.Decide(t.Context(), policy.ActionResolve, anyInput)
				if err != nil {
					t.Fatal(err)
				}
				seen[d.Allow]++
				time.Sleep(7 * time.Microsecond)
			}
			if tt.volatile && len(seen) != 2 {
				t.Errorf("a guest deciding on %s gave the same answer every time: %v (answered from the cache)", tt.name, seen)
			}
			if !tt.volatile && (len(seen) != 1 || seen[true] == 0) {
				t.Errorf("deterministic guest answered %v, want allow every time", seen)
			}
			hits := cacheHits(t, reg)
			if tt.volatile && hits != 0 {
				t.Errorf("%v decisions answered from the cache, want none", hits)
			}
			if !tt.volatile && hits < 190 {
				t.Errorf("%v decisions answered from the cache, want nearly all of 200", hits)
			}
		})
	}
}

// cacheHits reads sluice_policy_cache_total{result="hit"} from reg.
func cacheHits(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sluice_policy_cache_total" {
			for _, m := range mf.GetMetric() {
				if label(m, "result") == "hit" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
