package policy_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
)

const casesGlob = "../policies/testdata/*.yaml"

// regoEngines builds Sets over paths (nil: the embedded default), one per
// distinct case data.
func regoEngines(paths []string) func(t *testing.T, data map[string]any) policy.Engine {
	var mu sync.Mutex
	sets := map[string]*policy.Set{}
	return func(t *testing.T, data map[string]any) policy.Engine {
		t.Helper()
		key, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if s, ok := sets[string(key)]; ok {
			return s
		}
		s, err := policy.Load(t.Context(), paths, policy.WithData(data))
		if err != nil {
			t.Fatal(err)
		}
		sets[string(key)] = s
		return s
	}
}

func TestCases_RegoEmbedded(t *testing.T) {
	cases, err := policytest.Load(casesGlob)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 80 {
		t.Fatalf("%d cases, want at least 80", len(cases))
	}
	policytest.Run(t, cases, regoEngines(nil))
}

func TestCases_RegoDirectory(t *testing.T) {
	cases, err := policytest.Load(casesGlob)
	if err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, cases, regoEngines([]string{"../policies"}))
}
