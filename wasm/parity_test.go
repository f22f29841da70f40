package wasm_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
	"github.com/sluice-oci/sluice/wasm"
)

// TestParity_ShippedPolicies runs the case table of the shipped Rego set
// (policies/testdata) against sdk/examples/default, the same policies
// written with the Go SDK: every allow/deny and reason must match.
func TestParity_ShippedPolicies(t *testing.T) {
	t.Parallel()
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
		e, _ := newEngine(top, "examples/default", data, wasm.WithPoolSize(1))
		engines[string(key)] = e
		return e
	})
}
