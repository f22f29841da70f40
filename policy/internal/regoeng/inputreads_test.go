package regoeng

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluice-oci/sluice/policies"
)

// readsString renders InputReads as "a.b c.d? …" (? marks presence-only),
// or "ANY" when the policy may read anything.
func readsString(e *Engine) string {
	reads, ok := e.InputReads()
	if !ok {
		return "ANY"
	}
	var b strings.Builder
	for i, r := range reads {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.Join(r.Path, "."))
		if r.PresenceOnly {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func newEngine(t *testing.T, srcs ...string) *Engine {
	t.Helper()
	mods := map[string]*ast.Module{}
	for i, src := range srcs {
		name := fmt.Sprintf("m%d.rego", i)
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		mods[name] = m
	}
	e, err := New(t.Context(), mods, map[string]any{}, []string{"advertise", "serve", "resolve"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEngine_InputReads(t *testing.T) {
	t.Parallel()
	const pkg = "package sluice.resolve\n"
	cases := []struct {
		name string
		srcs []string
		want string
	}{
		{"fixed paths", []string{pkg + `allow if { input.reference.registry == "docker.io"; input.action == "resolve" }`}, "action reference.registry"},
		{"no input at all", []string{pkg + `allow := true`}, ""},
		{"object.get with a constant path", []string{pkg + `allow if object.get(input, ["reference", "repository"], "") == "a/b"`}, "reference.repository"},
		{"object.get with a string key", []string{pkg + `allow if object.get(input.peer, "tls_subject", "") == "CN=a"`}, "peer.tls_subject"},
		{"object.get with a variable path", []string{pkg + `allow if { some k in ["a", "b"]; object.get(input, [k], "") == "x" }`}, "ANY"},
		{"object.get with a variable path under a prefix", []string{pkg + `allow if { some k in ["a", "b"]; object.get(input.reference, [k], "") == "x" }`}, "reference"},
		{"input[x]", []string{pkg + `allow if { some k; input[k] == "x" }`}, "ANY"},
		{"input.reference[k]: the whole reference", []string{pkg + `allow if { some k; input.reference[k] == "x" }`}, "reference"},
		{"iteration over mirrors", []string{pkg + `allow if { some m in input.mirrors; m == "*" }`}, "mirrors"},
		{"membership in mirrors", []string{pkg + `allow if "*" in input.mirrors`}, "mirrors"},
		{"comprehension over labels", []string{pkg + `allow if count([v | some v in input.node.labels]) > 0`}, "node.labels"},
		{"input.a[input.b]", []string{pkg + `allow if input.node.labels[input.reference.registry] == "x"`}, "node.labels reference.registry"},
		{"whole input as a value", []string{pkg + `allow if { x := input; x.action == "resolve" }`}, "ANY"},
		{"walk(input)", []string{pkg + `allow if { walk(input, [p, v]); v == "x" }`}, "ANY"},
		{"json.marshal(input)", []string{pkg + `allow if contains(json.marshal(input), "x")`}, "ANY"},
		{"input passed to a function", []string{pkg + "f(x) := x.action\nallow if f(input) == \"resolve\""}, "ANY"},
		{"a subtree passed to a function", []string{pkg + "f(x) := x.tls_subject\nallow if f(input.peer) == \"CN=a\""}, "peer"},
		{"with input as", []string{pkg + "p if input.action == \"x\"\nallow if p with input as {\"action\": \"x\"}"}, "ANY"},
		{"with input.path as", []string{pkg + "p if input.action == \"x\"\nallow if p with input.action as \"x\""}, "ANY"},
		{"print(input)", []string{pkg + `allow if { print(input); true }`}, "ANY"},
		{"a local named input", []string{pkg + `allow if { some input in [1]; input == 1 }`}, "ANY"},
		{"iteration over input", []string{pkg + `allow if { some k, v in input; v == k }`}, "ANY"},
		{"bare input", []string{pkg + `allow if input`}, "ANY"},
		{"read in another package, unused", []string{pkg + `allow := true`, "package other\np if input.peer.id == \"x\""}, "peer.id"},
		{"read in a rule head", []string{pkg + "allow := true\nm[input.peer.id] := 1"}, "peer.id"},
		{"read in an else", []string{pkg + "allow := false if input.size > 10\nelse := true"}, "size"},
		{"read through an import", []string{pkg + "import input.reference as ref\nallow if ref.tag == \"x\""}, "reference.tag"},
		{"every", []string{pkg + `allow if every m in input.mirrors { m != "" }`}, "mirrors"},
		{"template string", []string{pkg + `allow if $"{input.reference.tag}" == "x"`}, "reference.tag"},
		// presence-only normalisation
		{"presence: != \"\"", []string{pkg + `allow if input.reference.digest != ""`}, "reference.digest?"},
		{"presence: == \"\" and negation", []string{pkg + "allow if not input.reference.digest == \"\"\nx if \"\" != input.reference.digest"}, "reference.digest?"},
		{"presence: bare", []string{pkg + `allow if input.reference.digest`}, "reference.digest?"},
		{"presence: not bare", []string{pkg + `allow if not input.reference.digest`}, "reference.digest?"},
		{"presence: object.get default \"\"", []string{pkg + `allow if object.get(input, ["reference", "digest"], "") == ""`}, "reference.digest?"},
		{"presence refused: the value is used", []string{pkg + "allow if input.reference.digest != \"\"\nr := concat(\"@\", [\"x\", input.reference.digest])"}, "reference.digest"},
		{"presence refused: a parent is read", []string{pkg + "allow if input.reference.digest != \"\"\nr := input.reference"}, "reference reference.digest"},
		{"presence refused: compared with another value", []string{pkg + `allow if input.reference.digest != "sha256:x"`}, "reference.digest"},
		{"presence refused: object.get default not \"\"", []string{pkg + `allow if object.get(input, ["reference", "digest"], false) == ""`}, "reference.digest"},
		{"presence refused: in an assignment", []string{pkg + `allow := input.reference.digest != ""`}, "reference.digest"},
		{"presence refused: with modifier", []string{pkg + "allow if input.reference.digest != \"\" with data.x as 1"}, "reference.digest"},
		{"with a builtin replaced: neq", []string{pkg + "g(x, _) if x == \"a\"\np if input.peer.id != \"\"\nallow if p with neq as g"}, "ANY"},
		{"with a builtin replaced: object.get", []string{pkg + "f(o, _, _) := o.peer.id\nallow if object.get(input, \"action\", \"\") == \"a\" with object.get as f"}, "ANY"},
		{"with a builtin mocked by a value", []string{pkg + "allow if time.now_ns() > 0 with time.now_ns as 1"}, "ANY"},
		{"with a user function replaced", []string{pkg + "f(x) := x\ng(x) := x\nallow if f(input.action) == \"a\" with f as g"}, "ANY"},
		{"with a package holding a function replaced", []string{pkg + "allow if data.lib.f(input.action) with data.lib as {}", "package lib\nf(x) if x == \"a\""}, "ANY"},
		{"with data replaced by a value", []string{pkg + "allow if data.lib.x == input.action with data.lib.x as \"a\"", "package lib\nx := \"b\""}, "action"},
		{"presence refused: with input", []string{pkg + "p if input.reference.digest != \"\"\nallow if p with input.reference.digest as \"x\""}, "ANY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := readsString(newEngine(t, tc.srcs...)); got != tc.want {
				t.Errorf("reads = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEngine_InputReads_Shipped(t *testing.T) {
	t.Parallel()
	fsys := policies.FS()
	var srcs []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		bs, err := fs.ReadFile(fsys, p)
		srcs = append(srcs, string(bs))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readsString(newEngine(t, srcs...))
	t.Logf("shipped policies read: %s", got)
	// The digest value is read by lib.digest_suffix (part of lib.ref_string).
	const want = "action mirrors reference.digest reference.registry reference.repository reference.tag source.registries upstream.credentials upstream.endpoint"
	if got != want {
		t.Errorf("reads = %q, want %q", got, want)
	}
}

func TestEngine_DecisionReads(t *testing.T) {
	t.Parallel()
	const pkg = "package sluice.resolve\n"
	cases := []struct {
		name string
		srcs []string
		want string // "NONE": not ok
	}{
		{"reasons only on deny: their reads left out", []string{pkg + "allow if input.reference.registry == \"a\"\nreasons contains input.reference.tag if not allow"}, "reference.registry"},
		{"through helper rules", []string{pkg + "import data.lib\nallow if not lib.bad\nreasons contains lib.msg if not allow", "package lib\nbad if input.action == \"x\"\nmsg := input.peer.id"}, "action"},
		{"deny messages decide", []string{pkg + "allow := true\ndeny contains input.peer.id if input.action == \"x\""}, "action peer.id"},
		{"reasons that hold on allow", []string{pkg + "allow if input.action == \"x\"\nreasons contains input.peer.id"}, "NONE"},
		{"whole input in allow", []string{pkg + "allow if count(input) > 1"}, "NONE"},
		{"whole input in reasons only", []string{pkg + "allow if input.action == \"x\"\nreasons contains json.marshal(input) if not allow"}, "action"},
		{"dynamic ref reaches every rule", []string{pkg + "import data.lib\nallow if count([k | lib[k]]) == 0", "package lib\na if input.peer.id == \"p\"\nb if input.size > 1"}, "peer.id size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, tc.srcs...)
			reads, ok := e.DecisionReads()
			got := "NONE"
			if ok {
				var parts []string
				for _, r := range reads {
					parts = append(parts, strings.Join(r.Path, "."))
				}
				got = strings.Join(parts, " ")
			}
			if got != tc.want {
				t.Errorf("decision reads = %q, want %q", got, tc.want)
			}
		})
	}
}
