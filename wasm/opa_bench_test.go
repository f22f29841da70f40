package wasm_test

import (
	"testing"

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
			e, err := newOPAEngine(b, modules, v.entrypoints, v.opts...)
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
