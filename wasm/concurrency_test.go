package wasm_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// TestEngine_Concurrent decides from many goroutines through a pool
// smaller than their number; every answer must match its own input.
func TestEngine_Concurrent(t *testing.T) {
	t.Parallel()
	e, reg := newEngine(t, "examples/default", nil, wasm.WithPoolSize(3))
	const workers, perWorker = 12, 100
	var wg sync.WaitGroup
	var failures atomic.Int32
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				registry := fmt.Sprintf("r%d-%d.example", w, i)
				mirrored := i%2 == 0
				in := policy.Input{Reference: ref(registry, "app", "v1", ""), Mirrors: []string{"docker.io"}}
				if mirrored {
					in.Mirrors = append(in.Mirrors, registry)
				}
				d, err := e.Decide(t.Context(), policy.ActionResolve, in)
				if err != nil || d.Allow != mirrored || (!mirrored && d.Reasons[0] != fmt.Sprintf("registry %q is not in mirrors", registry)) {
					failures.Add(1)
					t.Errorf("worker %d call %d: %+v, %v", w, i, d, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() == 0 {
		for _, code := range []wasm.Code{wasm.CodeTimeout, wasm.CodeTrap, wasm.CodeBadResult} {
			if n := errorCount(t, reg, "examples/default", code); n != 0 {
				t.Errorf("%s errors: %v", code, n)
			}
		}
	}
}
