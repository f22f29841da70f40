package policy_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sluice-oci/sluice/policy"
)

// threadCPU measures the CPU time of the benchmark's (locked) thread:
// cpu-ns/op leaves out the time the thread waits for a CPU, which wall
// time (ns/op) counts on a shared, busy machine.
type threadCPU struct{ start int64 }

func startThreadCPU() threadCPU {
	runtime.LockOSThread()
	return threadCPU{start: threadNanos()}
}

func (c threadCPU) report(b *testing.B) {
	b.ReportMetric(float64(threadNanos()-c.start)/float64(b.N), "cpu-ns/op")
	runtime.UnlockOSThread()
}

func threadNanos() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

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
		cpu := startThreadCPU()
		for b.Loop() {
			d, err := s.Decide(ctx, policy.ActionResolve, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
		cpu.report(b)
	})
	b.Run("rego/cached", func(b *testing.B) {
		s, err := policy.Load(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		in := benchInput(27)
		b.ReportAllocs()
		cpu := startThreadCPU()
		for b.Loop() {
			d, err := s.Decide(ctx, policy.ActionResolve, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
		cpu.report(b)
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
