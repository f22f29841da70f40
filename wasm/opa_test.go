package wasm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
	"github.com/sluice-oci/sluice/wasm"
)

// TestOPA_ParityShipped compiles the shipped policies with the pinned
// OPA (opa build -t wasm) and runs every case of the shared table through
// a policy.Set loading the .wasm file and through the Rego set: allow and
// every reason must be equal, and the case's expectations hold. Variants:
// entrypoints per rule on the opa_eval fast path and on the
// opa_eval_ctx_* sequence, and one entrypoint per action package.
func TestOPA_ParityShipped(t *testing.T) {
	t.Parallel()
	cases, err := policytest.Load("../policies/testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	modules := shippedModules(t)
	rules := ruleEntrypoints(t, modules)
	if !slices.Contains(rules, "sluice/resolve/allow") || !slices.Contains(rules, "sluice/fetch/allow") {
		t.Fatalf("entrypoints %v lack the allow rules", rules)
	}
	for _, v := range []struct {
		name        string
		entrypoints []string
		opts        []wasm.Option
	}{
		{"rules", rules, nil},
		{"rules-compat", rules, []wasm.Option{wasm.WithOPACompat()}},
		{"packages", packageEntrypoints(), nil},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "shipped.wasm")
			if err := os.WriteFile(path, compileOPA(t, modules, v.entrypoints, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			opener := wasm.Opener(append([]wasm.Option{wasm.WithCompilationCache(testCache), wasm.WithPoolSize(1), wasm.WithTimeout(5 * time.Second)}, v.opts...)...)
			regoSets := setsByData(t, nil)
			wasmSets := setsByData(t, []string{path}, policy.WithWasm(opener))
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					ws := wasmSets(t, c.Data)
					if err := c.Check(t.Context(), ws); err != nil {
						t.Errorf("%s: %s: %v", c.File, c.Name, err)
					}
					want, err := regoSets(t, c.Data).Decide(t.Context(), c.Action, c.EngineInput())
					if err != nil {
						t.Fatal(err)
					}
					got, err := ws.Decide(t.Context(), c.Action, c.EngineInput())
					if err != nil {
						t.Fatal(err)
					}
					if got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) {
						t.Errorf("opa wasm decided %+v, rego %+v", got, want)
					}
				})
			}
		})
	}
}

// setsByData loads a policy.Set over paths per distinct case data,
// without a decision cache.
func setsByData(top *testing.T, paths []string, opts ...policy.Option) func(t *testing.T, data map[string]any) *policy.Set {
	var mu sync.Mutex
	sets := map[string]*policy.Set{}
	return func(t *testing.T, data map[string]any) *policy.Set {
		t.Helper()
		key, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if s, ok := sets[string(key)]; ok {
			return s
		}
		// OPA's compilers write to shared (interned) terms: a Rego set
		// is not compiled while compileOPA runs (see regoeng.buildMu).
		opaMu.Lock()
		s, err := policy.Load(top.Context(), paths, append(opts, policy.WithData(data), policy.WithCacheSize(0))...)
		opaMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		top.Cleanup(func() { _ = s.Close() })
		sets[string(key)] = s
		return s
	}
}

// newOPAEngine compiles modules and opens the result as an engine.
func newOPAEngine(t testing.TB, modules map[string]string, entrypoints []string, opts ...wasm.Option) (*wasm.Engine, error) {
	t.Helper()
	bs := compileOPA(t, modules, entrypoints, nil)
	e, err := wasm.New(t.Context(), "opa.wasm", bs, nil, append([]wasm.Option{wasm.WithCompilationCache(testCache), wasm.WithPoolSize(1)}, opts...)...)
	if err == nil {
		t.Cleanup(func() { _ = e.Close() })
	}
	return e, err
}

// TestOPA_LoopIsCutOff: a compiled policy that iterates far longer than
// the deadline is stopped by the same fuel/interrupt instrumentation as
// SDK guests: a timeout engine error, and the next decision works.
func TestOPA_LoopIsCutOff(t *testing.T) {
	t.Parallel()
	modules := map[string]string{"loop.rego": `package sluice.resolve

allow if {
	input.size == 1
	r := numbers.range(1, 30000)
	some x in r
	some y in r
	x > y
	y > x
}
`}
	for _, v := range []struct {
		name string
		opts []wasm.Option
	}{{"opa_eval", nil}, {"compat", []wasm.Option{wasm.WithOPACompat()}}} {
		t.Run(v.name, func(t *testing.T) {
			// Not parallel: both variants compile the same bytes through
			// the shared compilation cache, and wazero v1.12.0 races when
			// one runtime instantiates a module another is compiling
			// (seen under make test's -race; noted in the closing note).
			e, err := newOPAEngine(t, modules, []string{"sluice/resolve/allow"}, append(v.opts, wasm.WithTimeout(100*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = e.Decide(t.Context(), policy.ActionResolve, policy.Input{Size: 1})
			if code := wasm.CodeOf(err); code != wasm.CodeTimeout {
				t.Fatalf("looping policy: code %q (%v), want %q", code, err, wasm.CodeTimeout)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the loop ran %v past a 100ms deadline", took)
			}
			d, err := e.Decide(t.Context(), policy.ActionResolve, policy.Input{Size: 2})
			if err != nil || d.Allow {
				t.Errorf("after the timeout: %+v, %v; want a deny without error", d, err)
			}
		})
	}
}

// TestOPA_LoopIsEngineErrorInSet: through the facade, the cut-off loop
// is an engine error, a deny unless fail-open.
func TestOPA_LoopIsEngineErrorInSet(t *testing.T) {
	t.Parallel()
	bs := compileOPA(t, map[string]string{"loop.rego": `package sluice.resolve

allow if {
	r := numbers.range(1, 30000)
	some x in r
	some y in r
	x > y
	y > x
}
`}, []string{"sluice/resolve/allow"}, nil)
	path := filepath.Join(t.TempDir(), "loop.wasm")
	if err := os.WriteFile(path, bs, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Load(t.Context(), []string{path}, policy.WithWasm(wasm.Opener(wasm.WithTimeout(50*time.Millisecond), wasm.WithPoolSize(1))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Decide(t.Context(), policy.ActionResolve, policy.Input{})
	if d.Allow {
		t.Errorf("a looping policy allowed: %+v", d)
	}
	if wasm.CodeOf(err) != wasm.CodeTimeout && !strings.Contains(strings.Join(d.Reasons, " "), "timeout") {
		t.Errorf("decision %+v, err %v: want a timeout engine error", d, err)
	}
}

// TestOPA_Builtins: the builtins a compiled policy imports are resolved
// by name at load; one the host lacks or refuses fails the load naming it.
func TestOPA_Builtins(t *testing.T) {
	t.Parallel()
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, &ast.Builtin{
		Name: "sluice.custom",
		Decl: types.NewFunction(types.Args(types.S), types.B),
	})
	for _, c := range []struct {
		name, src string
		caps      *ast.Capabilities
		want      string // in the load error; "" loads
	}{
		{"sprintf", `package sluice.resolve
allow if sprintf("%s:%d", [input.reference.repository, input.size]) == "a:1"`, nil, ""},
		{"unknown", `package sluice.resolve
allow if sluice.custom(input.reference.repository)`, caps, "builtin sluice.custom, which this host does not provide"},
		{"network", `package sluice.resolve
allow if http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200`, nil, "http.send"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bs := compileOPA(t, map[string]string{"p.rego": c.src}, []string{"sluice/resolve/allow"}, c.caps)
			e, err := wasm.New(t.Context(), "p.wasm", bs, nil, wasm.WithCompilationCache(testCache), wasm.WithPoolSize(1))
			if c.want != "" {
				if err == nil {
					_ = e.Close()
					t.Fatal("loaded")
				}
				if wasm.CodeOf(err) != wasm.CodeABI || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("load error %v, want code abi naming %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for in, want := range map[int64]bool{1: true, 2: false} {
				d, err := e.Decide(t.Context(), policy.ActionResolve, policy.Input{Size: in, Reference: &policy.Reference{Repository: "a"}})
				if err != nil || d.Allow != want {
					t.Errorf("size %d: %+v, %v; want allow %v", in, d, err, want)
				}
			}
		})
	}
}

// TestOPA_MissingEntrypoint: an action without an entrypoint is an engine
// error (as an undefined package is for the Rego set); a module with no
// sluice entrypoint at all is refused at load.
func TestOPA_MissingEntrypoint(t *testing.T) {
	t.Parallel()
	modules := map[string]string{"p.rego": "package sluice.resolve\nallow := true\n"}
	e, err := newOPAEngine(t, modules, []string{"sluice/resolve/allow"})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := e.Decide(t.Context(), policy.ActionResolve, policy.Input{}); err != nil || !d.Allow {
		t.Errorf("resolve: %+v, %v", d, err)
	}
	if _, err := e.Decide(t.Context(), policy.ActionServe, policy.Input{}); wasm.CodeOf(err) != wasm.CodeABI {
		t.Errorf("serve without an entrypoint: %v, want code abi", err)
	}
	other := map[string]string{"q.rego": "package other\nallow := true\n"}
	if _, err := newOPAEngine(t, other, []string{"other/allow"}); wasm.CodeOf(err) != wasm.CodeABI || !strings.Contains(err.Error(), "sluice/<action>") {
		t.Errorf("no sluice entrypoint: %v, want code abi", err)
	}
}

// TestOPA_Bundle: an OPA bundle built with -t wasm (policy.wasm, its
// data, its .rego sources) given as a --policy path runs on the Wasm
// engine with the bundle's data; its sources are not compiled again into
// a Rego set (which would make a second source).
func TestOPA_Bundle(t *testing.T) {
	t.Parallel()
	modules := shippedModules(t)
	data := map[string]any{"sluice": map[string]any{"settings": map[string]any{"digest_only": true}}}
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(path, buildOPABundle(t, modules, data, ruleEntrypoints(t, modules)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Load(t.Context(), []string{path}, policy.WithWasm(wasm.Opener(wasm.WithCompilationCache(testCache), wasm.WithPoolSize(1))), policy.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ref := policy.Reference{Registry: "docker.io", Repository: "library/nginx", Kind: policy.KindManifest}
	byTag, byDigest := ref, ref
	byTag.Tag, byDigest.Digest = "1.27", "sha256:"+strings.Repeat("a", 64)
	for _, c := range []struct {
		ref  policy.Reference
		want bool
	}{{byTag, false}, {byDigest, true}} {
		d, err := s.Decide(t.Context(), policy.ActionResolve, policy.Input{Reference: &c.ref, Mirrors: []string{"*"}})
		if err != nil || d.Allow != c.want {
			t.Errorf("%+v: %+v, %v; want allow %v (digest_only from the bundle's data)", c.ref, d, err, c.want)
		}
		if !c.want && !strings.Contains(strings.Join(d.Reasons, " "), "digest_only") {
			t.Errorf("reasons %q do not name digest_only", d.Reasons)
		}
	}
	// Without a Wasm engine the compiled policy is refused, not ignored.
	if _, err := policy.Load(t.Context(), []string{path}); policy.ErrorCode(err) != policy.CodeLoad || !strings.Contains(err.Error(), "policy.wasm") {
		t.Errorf("Load without a Wasm engine: %v, want a load error naming policy.wasm", err)
	}
}
