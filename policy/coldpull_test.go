package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
)

// TestSet_DecideColdPullHitsCachePerBlob: a cold pull asks, per blob of
// one image, resolve on the node that pulls and serve on the node that
// holds it; the inputs differ only in the digest (and size, media type),
// which the shipped policies read only to build the message of a refusal.
// The first blob is evaluated, every other one is a cache hit; a refused
// blob still gets its own reference in its reasons.
func TestSet_DecideColdPullHitsCachePerBlob(t *testing.T) {
	t.Parallel()
	const layers = 6
	blob := func(i int) policy.Input {
		return policy.Input{
			Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx",
				Digest: fmt.Sprintf("sha256:%064x", i), Kind: policy.KindBlob},
			MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
			Size:      int64(1000 * (i + 1)),
			Peer:      &policy.Peer{ID: "12D3KooPeer", Address: "10.0.0.7:5000"},
			Source: &policy.Source{Registries: []string{"docker.io"},
				Repositories: []string{"docker.io/library/nginx"}},
		}
	}
	cases := []struct {
		name    string
		action  policy.Action
		mirrors []string
		allow   bool
	}{
		{"serve, shared", policy.ActionServe, []string{"docker.io"}, true},
		{"resolve, shared", policy.ActionResolve, []string{"docker.io"}, true},
		{"advertise, shared", policy.ActionAdvertise, []string{"*"}, true},
		{"serve, not shared", policy.ActionServe, []string{"ghcr.io"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewPedanticRegistry()
			s, err := policy.Load(t.Context(), nil, policy.WithRegisterer(reg))
			if err != nil {
				t.Fatal(err)
			}
			s.SetMirrors(tc.mirrors)
			for i := range layers {
				d := decide(t, s, tc.action, blob(i))
				if d.Allow != tc.allow {
					t.Fatalf("blob %d: %+v, want allow %v", i, d, tc.allow)
				}
				if !tc.allow && !strings.Contains(strings.Join(d.Reasons, " "), "not in mirrors") {
					t.Errorf("blob %d: reasons %q", i, d.Reasons)
				}
			}
			miss := cacheLookups(t, reg, "miss")
			hit := cacheLookups(t, reg, "hit")
			// A refusal's reasons are keyed by everything they read: a
			// denied blob is a hit for its decision, a miss for its reasons.
			wantMiss := 1.0
			if !tc.allow {
				wantMiss = layers
			}
			if miss != wantMiss || hit+miss != layers {
				t.Errorf("%d blobs: %v evaluations, %v cache hits; want %v evaluations (cache key %s)",
					layers, miss, hit, wantMiss, s.Cache().Key)
			}
		})
	}
}

// cacheLookups reads sluice_policy_cache_total{result} from reg.
func cacheLookups(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_policy_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
