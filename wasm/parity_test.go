package wasm_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
	"github.com/sluice-oci/sluice/wasm"
)

// TestParity_ShippedPolicies runs the case table of the shipped Rego set
// (policies/testdata) against sdk/examples/default, the same policies
// written with the Go SDK: every allow/deny and reason must match, on the
// compact fast path (sluice_decide_compact) and on the JSON path.
func TestParity_ShippedPolicies(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]wasm.Option{
		"compact": nil,
		"json":    {wasm.WithJSONOnly()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testParity(t, opts...)
		})
	}
}

func testParity(t *testing.T, opts ...wasm.Option) {
	cases, err := policytest.Load("../policies/testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	top := t // engines live for the whole test, not the first subtest using them
	var mu sync.Mutex
	engines := map[string]policy.Engine{} // by data document
	policytest.Run(t, cases, func(t *testing.T, data map[string]any) policy.Engine {
		key, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if e, ok := engines[string(key)]; ok {
			return e
		}
		e, _ := newEngine(top, "examples/default", data, append(opts, wasm.WithPoolSize(1))...)
		engines[string(key)] = e
		return e
	})
}

// TestSDK_ExportsCompact checks that SDK guests offer the fast path, so
// that the "compact" parity run above does not silently fall back to JSON.
func TestSDK_ExportsCompact(t *testing.T) {
	t.Parallel()
	rt := wazero.NewRuntime(t.Context())
	defer func() { _ = rt.Close(t.Context()) }()
	cm, err := rt.CompileModule(t.Context(), guest(t, "examples/default"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.ExportedFunctions()["sluice_decide_compact"]; !ok {
		t.Error("an SDK guest does not export sluice_decide_compact")
	}
}
