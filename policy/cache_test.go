package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

// TestSet_DecideCacheWithReplacedBuiltins: a `with` that swaps a builtin
// or a function for user code lets that code see more of the input than
// the projection analysis credits the call with, so the cache must key on
// the whole input: two inputs that differ only in peer.id decide apart.
func TestSet_DecideCacheWithReplacedBuiltins(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, src string }{
		{"with neq as a function", `package sluice.serve
trusted(x, _) if x == "node-1"
has_peer if input.peer.id != ""
allow if has_peer with neq as trusted
`},
		{"with object.get as a function", `package sluice.serve
peer_of(obj, _, _) := obj.peer.id
allow if object.get(input, ["reference", "registry"], "") == "node-1" with object.get as peer_of
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeFile(t, t.TempDir(), "peer.rego", tc.src)
			s, err := policy.Load(t.Context(), []string{p})
			if err != nil {
				t.Fatal(err)
			}
			if got := policy.ProjectionOf(s); got != "*" {
				t.Errorf("projection = %q, want the whole input", got)
			}
			in := func(peer string) policy.Input {
				return policy.Input{Reference: digestRef("node-1"), Peer: &policy.Peer{ID: peer}}
			}
			if d := decide(t, s, policy.ActionServe, in("node-1")); !d.Allow {
				t.Fatalf("node-1: %+v", d)
			}
			if d := decide(t, s, policy.ActionServe, in("node-2")); d.Allow {
				t.Errorf("node-2 got the cached allow of node-1: %+v", d)
			}
		})
	}
}

// TestSet_DecideNondeterministicNotCached: a policy that calls a builtin
// OPA marks non-deterministic (here rand.intn, a fresh number per
// evaluation as time.now_ns would be a fresh time) is evaluated at every
// decision; a pure one is cached.
func TestSet_DecideNondeterministicNotCached(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		withLib   bool // load lib.rego too
		cached    bool
		nondet    []string
	}{
		{"rand.intn", `package sluice.resolve
allow if rand.intn(sprintf("%d", [time.now_ns()]), 2) == 0
`, false, false, []string{"rand.intn", "time.now_ns"}},
		{"time in a helper package", `package sluice.resolve
import data.lib
allow if lib.odd_second
`, true, false, []string{"time.now_ns"}},
		{"pure", `package sluice.resolve
allow if input.reference.registry == "ghcr.io"
`, false, true, nil},
	}
	const lib = "package lib\nodd_second if (time.now_ns() / 1000000000) % 2 == 1\n"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			paths := []string{writeFile(t, dir, "p.rego", tc.src)}
			if tc.withLib {
				paths = append(paths, writeFile(t, dir, "lib.rego", lib))
			}
			s, err := policy.Load(t.Context(), paths)
			if err != nil {
				t.Fatal(err)
			}
			info := s.Cache()
			if info.Enabled != tc.cached || !slices.Equal(info.Nondeterministic, tc.nondet) {
				t.Errorf("Cache(): enabled %v, nondeterministic %q; want %v, %q", info.Enabled, info.Nondeterministic, tc.cached, tc.nondet)
			}
			if !tc.cached && !strings.Contains(info.String(), "non-deterministic builtins ("+tc.nondet[0]) {
				t.Errorf("Cache().String() = %q", info.String())
			}
			in := policy.Input{Reference: digestRef("ghcr.io")}
			for range 3 {
				decide(t, s, policy.ActionResolve, in)
			}
			if n := policy.CacheLen(s); (n > 0) != tc.cached {
				t.Errorf("%d cached decisions, want cached %v", n, tc.cached)
			}
		})
	}
}

// TestSet_DecideTimeDependentChanges: the answer of a time-dependent
// policy follows the clock instead of the first decision (rand.intn with
// a per-evaluation seed stands in for a clock that moves between calls).
func TestSet_DecideTimeDependentChanges(t *testing.T) {
	t.Parallel()
	p := writeFile(t, t.TempDir(), "coin.rego", `package sluice.resolve
allow if rand.intn(sprintf("%d", [time.now_ns()]), 2) == 0
`)
	s, err := policy.Load(t.Context(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	in := policy.Input{Reference: digestRef("ghcr.io")}
	seen := map[bool]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		seen[decide(t, s, policy.ActionResolve, in).Allow] = true
	}
	if len(seen) != 2 {
		t.Errorf("200 decisions of a coin-flip policy all answered %v: the first answer was cached", seen)
	}
}
