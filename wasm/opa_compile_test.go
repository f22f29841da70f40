package wasm_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/sluice-oci/sluice/policies"
	"github.com/sluice-oci/sluice/policy"
)

// The shipped policies compiled to Wasm by the pinned OPA
// (opa build -t wasm), once per set of entrypoints. opaMu also keeps
// OPA compilations (ours, policy.Load's) from running at once: OPA's
// compilers write to shared, interned terms.
var (
	opaMu     sync.Mutex
	opaBuilds = map[string][]byte{}
)

// shippedModules are policies/*.rego without the tests.
func shippedModules(t testing.TB) map[string]string {
	t.Helper()
	fsys := policies.FS()
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.rego") {
			continue
		}
		raw, err := fs.ReadFile(fsys, n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(raw)
	}
	return out
}

// ruleEntrypoints are sluice/<action>/<rule> for the rules allow, deny
// and reasons that the modules define.
func ruleEntrypoints(t testing.TB, modules map[string]string) []string {
	t.Helper()
	var out []string
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimPrefix(m.Package.Path.String(), "data.")
		action, ok := strings.CutPrefix(path, "sluice.")
		if !ok || !policy.Action(action).Valid() {
			continue
		}
		for _, r := range m.Rules {
			if rule := r.Head.Ref()[0].Value.String(); rule == "allow" || rule == "deny" || rule == "reasons" {
				out = append(out, "sluice/"+action+"/"+rule)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// packageEntrypoints are sluice/<action> for every action.
func packageEntrypoints() []string {
	var out []string
	for _, a := range policy.Actions {
		out = append(out, "sluice/"+string(a))
	}
	return out
}

// compileOPA compiles modules to one Wasm module with the entrypoints,
// as `opa build -t wasm -e …` does. caps, when not nil, are the
// capabilities (to declare a builtin OPA does not know).
func compileOPA(t testing.TB, modules map[string]string, entrypoints []string, caps *ast.Capabilities) []byte {
	t.Helper()
	key := fmt.Sprint(modules, entrypoints, caps != nil)
	opaMu.Lock()
	defer opaMu.Unlock()
	if b, ok := opaBuilds[key]; ok {
		return b
	}
	b := &bundle.Bundle{Data: map[string]any{}}
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			t.Fatal(err)
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{Path: name, URL: name, Raw: []byte(src), Parsed: m})
	}
	c := compile.New().WithTarget(compile.TargetWasm).WithBundle(b).WithEntrypoints(entrypoints...)
	if caps != nil {
		c = c.WithCapabilities(caps)
	}
	if err := c.Build(context.Background()); err != nil {
		t.Fatalf("opa build -t wasm %v: %v", entrypoints, err)
	}
	wasms := c.Bundle().WasmModules
	if len(wasms) != 1 {
		t.Fatalf("opa build -t wasm: %d modules", len(wasms))
	}
	opaBuilds[key] = wasms[0].Raw
	return wasms[0].Raw
}

// buildOPABundle is `opa build -t wasm -e …` of modules with data: the
// bundle (.tar.gz) it writes, with policy.wasm, data.json and the sources.
func buildOPABundle(t testing.TB, modules map[string]string, data map[string]any, entrypoints []string) []byte {
	t.Helper()
	opaMu.Lock() // see setsByData
	defer opaMu.Unlock()
	b := &bundle.Bundle{Data: data}
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{Path: name, URL: name, Raw: []byte(src), Parsed: m})
	}
	var out bytes.Buffer
	c := compile.New().WithTarget(compile.TargetWasm).WithBundle(b).WithEntrypoints(entrypoints...).WithOutput(&out)
	if err := c.Build(context.Background()); err != nil {
		t.Fatalf("opa build -t wasm: %v", err)
	}
	return out.Bytes()
}
