package policy_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

func benchInput(i int) policy.Input {
	return policy.Input{
		Reference: &policy.Reference{
			Registry: "docker.io", Repository: "library/nginx",
			Tag: "1." + strconv.Itoa(i), Kind: policy.KindManifest,
		},
		MediaType: "application/vnd.oci.image.index.v1+json",
		Mirrors:   []string{"docker.io", "registry.k8s.io"},
	}
}

func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	b.Run("rego/uncached", func(b *testing.B) {
		s, err := policy.Load(ctx, nil, policy.WithCacheSize(0))
		if err != nil {
			b.Fatal(err)
		}
		in := benchInput(27)
		b.ReportAllocs()
		for b.Loop() {
			d, err := s.Decide(ctx, policy.ActionResolve, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("rego/cached", func(b *testing.B) {
		s, err := policy.Load(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		in := benchInput(27)
		b.ReportAllocs()
		for b.Loop() {
			d, err := s.Decide(ctx, policy.ActionResolve, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("rego/uncached/parallel", func(b *testing.B) {
		s, err := policy.Load(ctx, nil, policy.WithCacheSize(0))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			in := benchInput(27)
			for pb.Next() {
				if d, err := s.Decide(ctx, policy.ActionResolve, in); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	})
	b.Run("rego/cached/parallel", func(b *testing.B) {
		s, err := policy.Load(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			in := benchInput(int(n.Add(1) % 8))
			for pb.Next() {
				if d, err := s.Decide(ctx, policy.ActionResolve, in); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	})
}
