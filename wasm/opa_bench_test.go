package wasm_test

import (
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// BenchmarkDecide_OPAWasm measures one resolve decision of the shipped
// Rego policies compiled by `opa build -t wasm`: input encoding, pool,
// deadline, opa_eval of allow and reasons, and result parsing. Compare
// with BenchmarkDecide (SDK guest) here and in package policy (Rego).
func BenchmarkDecide_OPAWasm(b *testing.B) {
	modules := shippedModules(b)
	for _, v := range []struct {
		name        string
		entrypoints []string
		opts        []wasm.Option
	}{
		{"rules", ruleEntrypoints(b, modules), nil},
		{"rules-compat", ruleEntrypoints(b, modules), []wasm.Option{wasm.WithOPACompat()}},
		{"packages", packageEntrypoints(), nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			// A second's deadline: the benchmark measures speed, and a
			// machine stalled by its neighbours once took a decision past
			// the 50 ms default (an engine error that stopped make bench).
			e, err := newOPAEngine(b, modules, v.entrypoints, append(v.opts, wasm.WithTimeout(time.Second))...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := e.Decide(b.Context(), policy.ActionResolve, benchInput)
				if err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}
