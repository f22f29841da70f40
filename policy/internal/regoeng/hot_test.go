package regoeng

import (
	"encoding/json"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"sigs.k8s.io/yaml"

	"github.com/sluice-oci/sluice/policies"
)

var actions = []string{"advertise", "serve", "resolve", "fetch"}

// shippedModules parses the shipped policies (tests left out).
func shippedModules(t testing.TB) map[string]*ast.Module {
	t.Helper()
	mods := map[string]*ast.Module{}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(policies.FS(), p)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(p, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		mods[p] = m
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return mods
}

// fullAllow is the reference: the full query's allow, without the hot
// query.
func fullAllow(t testing.TB, e *Engine, action string, input ast.Value) bool {
	t.Helper()
	q := e.queries[action]
	rs, err := q.pq.Eval(t.Context(), evalOpts(input)...)
	if err != nil || len(rs) == 0 {
		return false
	}
	return q.result(action, rs[0].Expressions[0].Value.(*ast.Term).Value.(*ast.Array)).Allow
}

// hotAllow is the hot query's answer; false when the action has none.
func hotAllow(t testing.TB, e *Engine, action string, input ast.Value) bool {
	t.Helper()
	q := e.queries[action]
	if q.hot == nil || !q.hotFor(input) {
		return false
	}
	vc := getFlatCache()
	defer vc.put()
	return q.hot.allows(t.Context(), input, noCancel{}, vc)
}

func evalOpts(input ast.Value) []rego.EvalOption {
	return []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalExternalCancel(noCancel{})}
}

func withAction(t testing.TB, input map[string]any, action string) ast.Value {
	t.Helper()
	in := map[string]any{}
	for k, v := range input {
		in[k] = v
	}
	in["action"] = action
	v, err := ast.InterfaceToValue(in)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHot_SharedCasesMatchFullQuery: on every case of the shared table,
// under the case's data, the hot query of the shipped policies answers
// exactly as the full query: it never allows what the policy refuses,
// and it answers every allowing case (so decisions take the cheap path).
func TestHot_SharedCasesMatchFullQuery(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../policies/testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Name   string         `json:"name"`
			Action string         `json:"action"`
			Data   map[string]any `json:"data"`
			Input  map[string]any `json:"input"`
		} `json:"cases"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) < 50 {
		t.Fatalf("only %d shared cases", len(file.Cases))
	}
	mods := shippedModules(t)
	engines := map[string]*Engine{}
	hot := 0
	for _, c := range file.Cases {
		key, _ := json.Marshal(c.Data)
		e := engines[string(key)]
		if e == nil {
			data := c.Data
			if data == nil {
				data = map[string]any{}
			}
			if e, err = New(t.Context(), mods, data, actions); err != nil {
				t.Fatal(err)
			}
			engines[string(key)] = e
		}
		in := withAction(t, c.Input, c.Action)
		full, got := fullAllow(t, e, c.Action, in), hotAllow(t, e, c.Action, in)
		if got != full {
			t.Errorf("%s: hot query allows %v, full query %v", c.Name, got, full)
		}
		if got {
			hot++
		}
	}
	if hot == 0 {
		t.Error("the hot query allowed no case")
	}
}

// TestHot_ShippedResidualIsFlat: for the shipped policies, the resolve
// and advertise hot queries read no support rule but functions (shallow
// partial evaluation keeps every function a call): partial evaluation's
// nested negations were rewritten into the query itself. Fetch has a hot
// query.
func TestHot_ShippedResidualIsFlat(t *testing.T) {
	t.Parallel()
	e, err := New(t.Context(), shippedModules(t), map[string]any{}, actions)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"resolve", "advertise", "fetch"} {
		h := e.queries[action].hot
		if h == nil {
			t.Fatalf("%s: no hot query", action)
		}
		if action == "fetch" {
			continue
		}
		for _, b := range h.bodies {
			ast.WalkRefs(b, func(r ast.Ref) bool {
				if !r.HasPrefix(partialRef) {
					return false
				}
				if rules := h.compiler.GetRulesExact(r); len(rules) > 0 && len(rules[0].Head.Args) > 0 {
					return false
				}
				t.Errorf("%s: hot query %v still reads support rule %v", action, b, r)
				return false
			})
		}
	}
}

// TestHot_RewritesMeanTheSame: policies whose residual the rewrites touch
// (nested negations, several bodies, local variables of the same name in
// different rules, defaults, else, with, object values) decide on the hot
// path exactly as the full query, on inputs around each branch.
func TestHot_RewritesMeanTheSame(t *testing.T) {
	t.Parallel()
	policies := map[string]string{
		"nested negations": `allow if not violated
violated if not shared
violated if { input.tag == "latest"; not input.digest }
shared if "*" in input.mirrors
shared if input.registry in input.mirrors
shared if { some m in input.mirrors; lower(m) == lower(input.registry) }`,
		"same local names in two rules": `allow if { not a; not b }
a if { x := input.xs[_]; x == 1 }
a if input.y == 2
b if { x := input.zs[_]; x == 3 }
b if { x := input.y; x == 4 }`,
		"double negation": `allow if not refused
refused if not input.ok`,
		"positive rule of one body with a variable": `allow if { ok; input.y == 1 }
ok if { some x in input.xs; x > 2 }`,
		"default true is not inlined": `default ok := true
ok := false if input.y == 1
allow if ok`,
		"else": `allow if not blocked
blocked := true if input.y == 1
else := false`,
		"with modifier": `allow if { not b with input.y as 5 }
b if input.y == 5
b if input.z == 1`,
		"object value": `allow if not o.x
o := {"x": true} if input.y == 1`,
		"non-boolean allow": `allow := "yes" if input.y == 1`,
		// The compiler evaluates the operands of "not e" before the
		// negation: complemented in place, an undefined input.xs would
		// fail the query instead of leaving blocked undefined.
		"negated call on a missing field": `allow if not blocked
blocked if count(input.xs) > 0`,
		"negation inside a support body": `allow if not v
v if { input.y == 2; not w }
w if count(input.xs) > 0`,
		// A function called in a comprehension stays a call in the
		// residual: the hot query is compiled with the policy's modules.
		"residual calls a policy function": `allow if count([x | some x in input.xs; not f(x)]) == 0
f(x) if x > 1`,
		"false values": `allow if not f
f := false if input.y == 1
f if input.y == 2`,
	}
	inputs := []string{
		`{}`,
		`{"mirrors": ["*"]}`,
		`{"mirrors": ["docker.io"], "registry": "docker.io", "tag": "latest"}`,
		`{"mirrors": ["Docker.IO"], "registry": "docker.io", "tag": "1", "digest": "sha256:x"}`,
		`{"mirrors": ["a"], "registry": "b"}`,
		`{"mirrors": "docker.io", "registry": "docker.io"}`,
		`{"xs": [1], "y": 3, "zs": [2]}`,
		`{"xs": [2], "y": 4, "zs": [3]}`,
		`{"xs": [3], "y": 1}`,
		`{"xs": [0, 5], "y": 2, "ok": true}`,
		`{"y": 5, "z": 0, "ok": false}`,
		`{"y": 1, "z": 1}`,
		`{"y": 2}`,
	}
	checkHot(t, policies, inputs, true)
}

// FuzzHotQuery: for any input document, the hot query of the shipped
// policies never allows what the full query refuses.
func FuzzHotQuery(f *testing.F) {
	for _, s := range []string{
		`{"reference": {"registry": "docker.io", "repository": "library/nginx", "tag": "1.27"}, "mirrors": ["docker.io"]}`,
		`{"reference": {"registry": "Docker.IO", "tag": "latest"}, "mirrors": ["index.docker.io"]}`,
		`{"reference": {"registry": "ghcr.io", "digest": "sha256:aa"}, "mirrors": ["*"], "source": {"registries": ["quay.io"]}}`,
		`{"reference": {"registry": "docker.io", "tag": false}, "mirrors": "docker.io", "upstream": {"credentials": true}}`,
	} {
		f.Add(s)
	}
	e, err := New(f.Context(), shippedModules(f), map[string]any{}, actions)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var in map[string]any
		if json.Unmarshal([]byte(raw), &in) != nil {
			return
		}
		for _, action := range actions {
			v := withAction(t, in, action)
			if hotAllow(t, e, action, v) && !fullAllow(t, e, action, v) {
				t.Fatalf("%s %s: hot query allows, the policy refuses", action, raw)
			}
		}
	})
}
