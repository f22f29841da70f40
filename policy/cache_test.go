package policy_test

import (
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
