package wasm_test

import (
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// benchInput is a typical resolve input: encoding it is part of the cost.
var benchInput = policy.Input{
	Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Kind: policy.KindManifest},
	MediaType: "application/vnd.oci.image.index.v1+json",
	Node:      &policy.Node{Name: "node-3"},
	Mirrors:   []string{"docker.io", "registry.k8s.io"},
}

// BenchmarkDecide measures one decision of the shipped policy set compiled
// to Wasm: input encoding, pool, deadline, guest decode/decide/encode and
// result parsing.
func BenchmarkDecide(b *testing.B) {
	b.Run("wasm", func(b *testing.B) {
		// A second's deadline here too: speed is measured, not the deadline.
		e, _ := newEngine(b, "examples/default", nil, wasm.WithPoolSize(1), wasm.WithTimeout(time.Second))
		b.ReportAllocs()
		for b.Loop() {
			d, err := e.Decide(b.Context(), policy.ActionResolve, benchInput)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("wasm-parallel", func(b *testing.B) {
		e, _ := newEngine(b, "examples/default", nil, wasm.WithTimeout(time.Second))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				d, err := e.Decide(b.Context(), policy.ActionResolve, benchInput)
				if err != nil || !d.Allow {
					b.Error(d, err)
					return
				}
			}
		})
	})
}
