package policy_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
)

// dropIns are policies added to the shipped set (or standing alone) by
// the property test.
var dropIns = []struct {
	name, file, src string
	alone           bool // without the shipped policies
	want            string
}{
	{"shipped", "", "", false, "action reference.registry reference.repository reference.tag reference.digest source.registries upstream.endpoint upstream.credentials mirrors"},
	{"serve deny on repository prefix", "private.rego", `package sluice.serve
deny contains msg if {
	startswith(input.reference.repository, "private/")
	msg := sprintf("%s is private", [input.reference.repository])
}`, false, "action reference.registry reference.repository reference.tag reference.digest source.registries upstream.endpoint upstream.credentials mirrors"},
	{"resolve allow by registry", "ghcr.rego", `package sluice.resolve
allow if input.reference.registry == "ghcr.io"`, false, "action reference.registry reference.repository reference.tag reference.digest source.registries upstream.endpoint upstream.credentials mirrors"},
	{"peer tls subject", "peers.rego", `package sluice.serve
deny contains "untrusted peer" if {
	input.peer
	not startswith(object.get(input, ["peer", "tls_subject"], ""), "CN=node-")
}`, false, "action reference.registry reference.repository reference.tag reference.digest peer.id peer.address peer.tls_subject source.registries upstream.endpoint upstream.credentials mirrors"},
	{"presence only", "presence.rego", `package sluice.resolve
default allow := false
allow if {
	input.reference.digest != ""
	input.reference.registry in input.mirrors
}
reasons contains "tags go upstream" if object.get(input, ["reference", "digest"], "") == ""
`, true, "action reference.registry reference.digest? mirrors"},
	{"presence refused", "presence.rego", `package sluice.resolve
allow if input.reference.digest != ""
reasons contains input.reference.digest if input.reference.tag
`, true, "action reference.tag? reference.digest"},
	{"whole input", "whole.rego", `package sluice.resolve
allow if count(object.keys(input)) < 4`, false, "*"},
}

// perturb returns a copy of in with fields redrawn from small pools, so
// that many inputs share a projected key while differing elsewhere.
func perturb(r *rand.Rand, in policy.Input) policy.Input {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	out := in
	if in.Reference != nil {
		ref := *in.Reference
		out.Reference = &ref
	}
	if r.IntN(4) == 0 {
		out.Reference = nil
	}
	if out.Reference == nil && r.IntN(2) == 0 {
		out.Reference = &policy.Reference{}
	}
	if ref := out.Reference; ref != nil {
		if r.IntN(2) == 0 {
			ref.Registry = pick("", "docker.io", "ghcr.io", "index.docker.io", "quay.io", "Docker.IO")
		}
		if r.IntN(2) == 0 {
			ref.Repository = pick("", "library/nginx", "private/app", "org/app")
		}
		if r.IntN(2) == 0 {
			ref.Tag = pick("", "latest", "1.27", "v2")
		}
		if r.IntN(2) == 0 {
			ref.Digest = pick("", "sha256:aa", "sha256:bb", "sha256:cc", "sha256:dd")
		}
		if r.IntN(2) == 0 {
			ref.Kind = pick("", policy.KindManifest, policy.KindBlob)
		}
	}
	if r.IntN(2) == 0 {
		out.MediaType = pick("", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.index.v1+json")
	}
	if r.IntN(2) == 0 {
		out.Size = int64(r.IntN(3)) * 1000
	}
	switch r.IntN(4) {
	case 0:
		out.Peer = nil
	case 1:
		out.Peer = &policy.Peer{ID: pick("", "p1", "p2"), Address: pick("", "10.0.0.1:5000", "10.0.0.2:40000"), TLSSubject: pick("", "CN=node-1", "CN=evil")}
	}
	if r.IntN(3) == 0 {
		out.Node = &policy.Node{Name: pick("", "n1"), Labels: map[string]string{"zone": pick("a", "b")}}
	}
	if r.IntN(3) == 0 {
		regs := [][]string{nil, {"docker.io"}, {"registry.internal", "ghcr.io"}}
		out.Source = &policy.Source{Image: pick("", "docker.io/library/nginx:1.27"), Pinned: r.IntN(2) == 0,
			Registries: regs[r.IntN(len(regs))], Repositories: regs[r.IntN(len(regs))]}
	}
	if r.IntN(2) == 0 {
		ms := [][]string{nil, {}, {"*"}, {"docker.io"}, {"ghcr.io", "registry.k8s.io"}, {"index.docker.io", "*"}}
		out.Mirrors = ms[r.IntN(len(ms))]
	}
	return out
}

// TestProjection_SameDecisions: for perturbed case-table inputs, a Set
// with the (projected) cache decides as one without a cache, for the
// shipped set and drop-ins.
func TestProjection_SameDecisions(t *testing.T) {
	t.Parallel()
	cases, err := policytest.Load("../policies/testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const perCase = 12 // ~100 cases: ~1200 decisions per policy
	for _, di := range dropIns {
		t.Run(di.name, func(t *testing.T) {
			t.Parallel()
			var paths []string
			if !di.alone {
				paths = append(paths, "../policies")
			}
			if di.file != "" {
				dir := t.TempDir()
				p := filepath.Join(dir, di.file)
				if err := os.WriteFile(p, []byte(di.src), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			sets := map[string][2]*policy.Set{} // per case data: cached, uncached
			r := rand.New(rand.NewPCG(1, uint64(len(di.name))))
			decisions, distinct := 0, map[string]bool{}
			reg := prometheus.NewPedanticRegistry() // of the set without data
			for _, c := range cases {
				dk, _ := json.Marshal(c.Data)
				pair, ok := sets[string(dk)]
				if !ok {
					opts := []policy.Option{policy.WithData(c.Data)}
					if len(c.Data) == 0 {
						opts = append(opts, policy.WithRegisterer(reg))
					}
					a, err := policy.Load(t.Context(), paths, opts...)
					if err != nil {
						t.Fatal(err)
					}
					b, err := policy.Load(t.Context(), paths, policy.WithData(c.Data), policy.WithCacheSize(0))
					if err != nil {
						t.Fatal(err)
					}
					pair = [2]*policy.Set{a, b}
					sets[string(dk)] = pair
					if got := policy.ProjectionOf(a); got != di.want {
						t.Fatalf("projection = %q, want %q", got, di.want)
					}
				}
				for range perCase {
					in := perturb(r, c.Input)
					for _, a := range policy.Actions {
						got, err1 := pair[0].Decide(t.Context(), a, in)
						want, err2 := pair[1].Decide(t.Context(), a, in)
						if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
							b, _ := json.Marshal(in)
							t.Fatalf("%s %s: cached %+v (%v), uncached %+v (%v)", a, b, got, err1, want, err2)
						}
						decisions++
						if len(c.Data) == 0 {
							in.Action = a
							distinct[string(policy.CacheKey(in))] = true
						}
					}
				}
			}
			// The projection must have merged inputs (fewer evaluations
			// than distinct inputs), or the test proves nothing about it.
			if n := cacheLookups(t, reg, "miss"); di.want != "*" && n >= float64(len(distinct)) {
				t.Errorf("%v evaluations for %d distinct inputs: no input shared a key", n, len(distinct))
			}
			t.Logf("%d decisions compared", decisions)
		})
	}
}
