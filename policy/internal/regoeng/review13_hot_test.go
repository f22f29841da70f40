package regoeng

import (
	"encoding/json"
	"strings"
	"testing"
)

// checkHot decides each input against each policy of package
// sluice.resolve on the hot query and on the full query: the hot query
// must never allow what the full query refuses (an error of the full
// query refuses) and, when exact, must answer the same.
func checkHot(t *testing.T, policies map[string]string, inputs []string, exact bool) {
	t.Helper()
	for name, src := range policies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, "package sluice.resolve\n"+src)
			for _, raw := range inputs {
				var in map[string]any
				d := json.NewDecoder(strings.NewReader(raw))
				d.UseNumber()
				if err := d.Decode(&in); err != nil {
					t.Fatal(err)
				}
				v := withAction(t, in, "resolve")
				got, full := hotAllow(t, e, "resolve", v), fullAllow(t, e, "resolve", v)
				if got && !full || exact && got != full {
					t.Errorf("input %s: hot query allows %v, full query %v", raw, got, full)
				}
			}
		})
	}
}

// TestHot_UndefinedOperandRefuses: a value read from the input into a
// variable must be defined for the body to hold, even when the variable
// is then used only under "not". Partial evaluation's copy propagation
// replaced the variable by the input reference inside the negation
// (x := input.y; not x == 2 became not input.y = 2), so a peer that left
// the field out was allowed by the hot query and refused by the policy.
func TestHot_UndefinedOperandRefuses(t *testing.T) {
	t.Parallel()
	checkHot(t, map[string]string{
		"assigned then negated": `allow if { t := input.reference.tag; not t == "latest" }`,
		"function argument": `allow if not latest(input.reference.tag)
latest(t) if t == "latest"`,
		"function of two rules": `allow if not f(input.y)
f(x) := false if x == 1
f(x) if x == 2`,
		"reference into a rule": `allow if not blocked[input.reference.registry]
blocked["evil.io"] := true`,
		"in a support rule": `allow if not refused
refused if { r := input.reference.registry; not r in {"docker.io", "ghcr.io"} }`,
	}, []string{
		`{}`,
		`{"reference": {}}`,
		`{"reference": {"digest": "sha256:aa"}}`,
		`{"reference": {"tag": "latest", "registry": "evil.io"}}`,
		`{"reference": {"tag": "1", "registry": "docker.io"}}`,
		`{"y": 2}`,
		`{"y": 3}`,
	}, false)
}

// TestHot_ConflictRefuses: a complete rule, function or object whose
// definitions disagree for an input is an evaluation error of the full
// query (refused). The hot query must not allow such an input: partial
// evaluation inlined only the definition that agreed with the query,
// and a hot body stopped at its first result, before the evaluator
// reached the conflicting definition.
func TestHot_ConflictRefuses(t *testing.T) {
	t.Parallel()
	checkHot(t, map[string]string{
		"allow true and false":  "allow if input.a\nallow := false if input.b",
		"complete rule":         "allow if x == 1\nx := 1 if input.a\nx := 2 if input.b",
		"function":              "allow if f(1) == 1\nf(y) := 1 if input.a\nf(y) := 2 if input.b",
		"object key":            "allow if o.x == 1\no[input.k] := 2\no.x := 1 if input.a",
		"one of several bodies": "allow if a\na if input.x == 1\na if { input.y == 2; z == 1 }\nz := 1 if input.q\nz := 2 if input.r",
		"first body errs":       "allow if { input.q; z == 1 }\nallow if input.y == 2\nz := 1 if input.q\nz := 2 if input.r",
	}, []string{
		`{}`,
		`{"a": true, "b": true}`,
		`{"a": true, "k": "x"}`,
		`{"y": 2, "q": true, "r": true}`,
		`{"x": 1, "q": true, "r": true}`,
	}, false)
}
