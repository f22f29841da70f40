package regoeng

import (
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestEngine_HotQuery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		src     string
		hot     bool
		x       int
		allow   bool
		reasons []string
	}{
		{"allowed: no reasons", "allow if input.x == 1\nreasons contains \"r\" if not allow\n", true, 1, true, nil},
		{"denied: full query gives reasons", "allow if input.x == 1\nreasons contains \"r\" if not allow\n", true, 2, false, []string{"r"}},
		{"reasons that hold on allow: no hot query", "allow if input.x == 1\nreasons contains \"info\"\n", false, 1, true, []string{"info"}},
		{"deny rules: no hot query", "allow := true\ndeny contains \"d\" if input.x == 2\n", false, 2, false, []string{"d"}},
		{"data-only work folded at load", "allow if count([y | some y in numbers.range(1, 100); y > input.x]) > 0\n", true, 1, true, nil},
		{"non-deterministic builtins run per decision", "allow if time.now_ns() > input.x\n", true, 1, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ast.ParseModuleWithOpts("p.rego", "package sluice.resolve\n"+tc.src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			e, err := New(t.Context(), map[string]*ast.Module{"p.rego": m}, map[string]any{}, []string{"resolve"})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.queries["resolve"].hot != nil; got != tc.hot {
				t.Errorf("hot query: %v, want %v", got, tc.hot)
			}
			in := ast.NewObject([2]*ast.Term{ast.StringTerm("x"), ast.IntNumberTerm(tc.x)})
			r, err := e.Eval(t.Context(), "resolve", in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Allow != tc.allow || !slices.Equal(r.Reasons, tc.reasons) {
				t.Errorf("got %+v, want allow %v reasons %q", r, tc.allow, tc.reasons)
			}
		})
	}
}

func TestEngine_Nondeterministic(t *testing.T) {
	t.Parallel()
	const pkg = "package sluice.resolve\n"
	cases := []struct {
		name string
		srcs []string
		want []string
	}{
		{"pure", []string{pkg + `allow if input.action == "resolve"`}, nil},
		{"time", []string{pkg + `allow if time.weekday(time.now_ns()) == "Saturday"`}, []string{"time.now_ns"}},
		{"several, sorted, once each", []string{pkg + "allow if rand.intn(\"x\", 10) < 5\nx := uuid.rfc4122(\"a\")\ny := rand.intn(\"y\", 2)"}, []string{"rand.intn", "uuid.rfc4122"}},
		{"http.send in another package", []string{pkg + "allow := true", "package lib\nr := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})"}, []string{"http.send"}},
		{"opa.runtime", []string{pkg + `allow if opa.runtime().env.X == "1"`}, []string{"opa.runtime"}},
		// A with modifier that puts a builtin in place of a function is no
		// call to the type checker, but the builtin runs all the same.
		{"rand.intn as a with value", []string{pkg + "pick(_, _) := 0\nallow if pick(\"k\", 2) == 0 with pick as rand.intn"}, []string{"rand.intn"}},
		{"http.send as a with value in another package", []string{pkg + "import data.lib\nallow if lib.ok",
			"package lib\nget(_) := {\"status_code\": 200}\nok if get({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200 with get as http.send"}, []string{"http.send"}},
		// OPA does not mark it, but it checks validity against the clock.
		{"x509 verification", []string{pkg + `allow if { [ok, _] := crypto.x509.parse_and_verify_certificates(data.chain); ok }`}, []string{"crypto.x509.parse_and_verify_certificates"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := newEngine(t, tc.srcs...).Nondeterministic(); !slices.Equal(got, tc.want) {
				t.Errorf("Nondeterministic() = %q, want %q", got, tc.want)
			}
		})
	}
}
