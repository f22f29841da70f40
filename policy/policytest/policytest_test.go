package policytest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
)

// fixed answers every decision with d.
type fixed struct {
	d    policy.Decision
	seen *policy.Input
}

func (f fixed) Decide(_ context.Context, _ policy.Action, in policy.Input) (policy.Decision, error) {
	*f.seen = in
	return f.d, nil
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "cases:\n  - {name: a, action: serve, input: {}, want_allow: true, wants: 1}\n", "unknown field"},
		{"unknown input key", "cases:\n  - {name: a, action: serve, input: {referance: {}}, want_allow: true}\n", "unknown field"},
		{"no name", "cases:\n  - {action: serve, input: {}, want_allow: true}\n", "no name"},
		{"bad action", "cases:\n  - {name: a, action: pull, input: {}, want_allow: true}\n", "bad action"},
		{"no want_allow", "cases:\n  - {name: a, action: serve, input: {}}\n", "want_allow"},
		{"action mismatch", "cases:\n  - {name: a, action: serve, input: {action: resolve}, want_allow: true}\n", "differs"},
	} {
		if _, err := policytest.Parse([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestCase_Check(t *testing.T) {
	t.Parallel()
	cases, err := policytest.Parse([]byte(`cases:
  - name: c
    action: serve
    input: {reference: {registry: docker.io}}
    want_allow: false
    want_reasons: ["not in mirrors"]
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cases[0]
	var seen policy.Input
	if err := c.Check(t.Context(), fixed{policy.Decision{Reasons: []string{`registry "docker.io" is not in mirrors`}}, &seen}); err != nil {
		t.Errorf("matching decision: %v", err)
	}
	if seen.Action != policy.ActionServe || seen.Mirrors == nil || len(seen.Mirrors) != 0 {
		t.Errorf("engine input %+v: want action set and empty mirrors", seen)
	}
	if err := c.Check(t.Context(), fixed{policy.Decision{Allow: true}, &seen}); err == nil || !strings.Contains(err.Error(), "allow = true, want false") {
		t.Errorf("wrong allow: %v", err)
	}
	if err := c.Check(t.Context(), fixed{policy.Decision{Reasons: []string{"other"}}, &seen}); err == nil || !strings.Contains(err.Error(), `no reason contains "not in mirrors"`) {
		t.Errorf("missing reason: %v", err)
	}
}

func TestLoad_ShippedTable(t *testing.T) {
	t.Parallel()
	cases, err := policytest.Load("../../policies/testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 80 {
		t.Errorf("%d cases", len(cases))
	}
	if _, err := policytest.Load("../../policies/testdata/*.nothing"); err == nil {
		t.Error("empty glob accepted")
	}
}
