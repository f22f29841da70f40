package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm/internal/abi"
)

// The OPA Wasm ABI (https://www.openpolicyagent.org/docs/wasm): what a
// module built by `opa build -t wasm` imports and exports. Such a module
// imports its memory (env.memory); the host turns the import into a
// memory the module defines (instrument.Limits.DefineImportedMemory), so
// that each pooled instance owns one under the same page cap as SDK
// guests.
const (
	opaEnv          = "env"
	opaAbort        = "opa_abort"
	opaPrintln      = "opa_println"
	opaBuiltin      = "opa_builtin" // + 0…4, the number of arguments
	opaABIMajor     = "opa_wasm_abi_version"
	opaABIMinor     = "opa_wasm_abi_minor_version"
	opaEval         = "opa_eval" // ABI 1.2: one call per evaluation
	opaMalloc       = "opa_malloc"
	opaJSONParse    = "opa_json_parse"
	opaJSONDump     = "opa_json_dump"
	opaValueParse   = "opa_value_parse"
	opaValueDump    = "opa_value_dump"
	opaHeapPtrGet   = "opa_heap_ptr_get"
	opaHeapPtrSet   = "opa_heap_ptr_set"
	opaCtxNew       = "opa_eval_ctx_new"
	opaCtxSetInput  = "opa_eval_ctx_set_input"
	opaCtxSetData   = "opa_eval_ctx_set_data"
	opaCtxSetEntry  = "opa_eval_ctx_set_entrypoint"
	opaCtxGetResult = "opa_eval_ctx_get_result"
	opaEvalCtx      = "eval"
	opaBuiltins     = "builtins"
	opaEntrypoints  = "entrypoints"
)

// opaRefused are builtins a compiled policy may not call: a Wasm policy
// has no network (ABI.md, "Host imports"), whatever its source language.
var opaRefused = map[string]bool{"http.send": true, "net.lookup_ip_addr": true}

// opaState is what an engine running an OPA-compiled module knows of it,
// read from the first instance at load (every instance of one compiled
// module answers the same).
type opaState struct {
	builtins []opaBuiltinFunc // by the module's builtin id
	entries  map[policy.Action]opaEntry
	metrics  metrics.Metrics

	mu        sync.RWMutex
	instances map[api.Module]*instance // the caller of a host function
}

type opaBuiltinFunc struct {
	name     string
	fn       topdown.BuiltinFunc
	volatile bool // non-deterministic (time, rand): the decision is not cached
}

// opaEntry are the entrypoint ids of one action: either the package
// sluice/<action> (an object with allow, deny and reasons), or its rules
// sluice/<action>/allow, …/deny, …/reasons. -1: not an entrypoint.
type opaEntry struct {
	pkg, allow, deny, reasons int32
}

func (o *opaState) instance(m api.Module) *instance {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.instances[m]
}

func (o *opaState) track(m api.Module, x *instance) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if x == nil {
		delete(o.instances, m)
		return
	}
	o.instances[m] = x
}

// checkOPAABI refuses at load a module that imports its memory but is
// not an OPA-compiled module this host can run, naming what is wrong.
func checkOPAABI(cm wazero.CompiledModule) error {
	exports := cm.ExportedFunctions()
	for _, name := range []string{opaMalloc, opaJSONParse, opaJSONDump, opaValueParse, opaValueDump,
		opaHeapPtrGet, opaHeapPtrSet, opaCtxNew, opaCtxSetInput, opaCtxSetData, opaCtxSetEntry,
		opaCtxGetResult, opaEvalCtx, opaBuiltins, opaEntrypoints} {
		if _, ok := exports[name]; !ok {
			return fmt.Errorf("module imports its memory but lacks the OPA Wasm export %s (sluice runs `opa build -t wasm` output or sluice ABI v%d modules, which own their memory)", name, abi.Version)
		}
	}
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		n, isBuiltin := strings.CutPrefix(name, opaBuiltin)
		isBuiltin = isBuiltin && len(n) == 1 && n[0] >= '0' && n[0] <= '4'
		if mod != opaEnv || !(isBuiltin || name == opaAbort || name == opaPrintln) {
			return fmt.Errorf("OPA module imports %s.%s; the host provides only env.memory, env.%s, env.%s and env.%s0…4", mod, name, opaAbort, opaPrintln, opaBuiltin)
		}
	}
	return nil
}

// newOPAHost instantiates the env module of the OPA ABI in rt: opa_abort,
// opa_println and opa_builtin0…4, which run OPA's own Go implementation
// (topdown) of the builtin the module names.
func (e *Engine) newOPAHost(ctx context.Context) error {
	b := e.rt.NewHostModuleBuilder(opaEnv)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(e.opaAbortFn), []api.ValueType{i32}, nil).Export(opaAbort)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(e.opaPrintlnFn), []api.ValueType{i32}, nil).Export(opaPrintln)
	for n := range 5 {
		params := make([]api.ValueType, 2+n) // builtin id, ctx, args
		for i := range params {
			params[i] = i32
		}
		b.NewFunctionBuilder().WithGoModuleFunction(e.opaBuiltinFn(n), params, []api.ValueType{i32}).Export(fmt.Sprintf("%s%d", opaBuiltin, n))
	}
	_, err := b.Instantiate(ctx)
	return err
}

// cString reads the NUL-terminated string at addr, at most limit bytes.
func cString(mem api.Memory, addr uint32, limit uint32) ([]byte, error) {
	size := mem.Size()
	if addr >= size {
		return nil, fmt.Errorf("string at %d outside guest memory of %d bytes", addr, size)
	}
	b, _ := mem.Read(addr, min(size-addr, limit+1))
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		return nil, fmt.Errorf("string at %d not terminated within %d bytes", addr, limit)
	}
	return b[:n], nil
}

func (e *Engine) opaAbortFn(_ context.Context, m api.Module, stack []uint64) {
	msg, err := cString(m.Memory(), uint32(stack[0]), abi.MaxLogLen)
	if err != nil {
		msg = []byte("(unreadable abort message: " + err.Error() + ")")
	}
	panic(&Error{Module: e.name, Code: CodeTrap, Err: fmt.Errorf("%s: %s", opaAbort, msg)})
}

func (e *Engine) opaPrintlnFn(ctx context.Context, m api.Module, stack []uint64) {
	msg, err := cString(m.Memory(), uint32(stack[0]), abi.MaxLogLen)
	if err != nil {
		panic(&Error{Module: e.name, Code: CodeOutOfBounds, Err: fmt.Errorf("%s: %w", opaPrintln, err)})
	}
	e.log.InfoContext(ctx, string(msg), "module", e.name, "source", "guest")
}

// opaBuiltinFn implements opa_builtin<n>(id, ctx, a1…an): the arguments
// are OPA values in guest memory, dumped by the guest (opa_value_dump),
// parsed here, given to the topdown builtin, and its result parsed into
// the guest (opa_malloc, opa_value_parse). A builtin error that halts
// evaluation in OPA fails the call (trap); any other makes the call
// undefined, as OPA's evaluator does in non-strict mode.
func (e *Engine) opaBuiltinFn(n int) api.GoModuleFunc {
	return func(ctx context.Context, m api.Module, stack []uint64) {
		x := e.opa.instance(m)
		id := uint32(stack[0])
		if x == nil || int(id) >= len(e.opa.builtins) || e.opa.builtins[id].fn == nil {
			panic(&Error{Module: e.name, Code: CodeTrap, Err: fmt.Errorf("%s%d: unknown builtin id %d", opaBuiltin, n, id)})
		}
		bf := e.opa.builtins[id]
		if bf.volatile {
			x.volatile = true
		}
		args := make([]*ast.Term, n)
		for i := range n {
			t, err := x.opaValueOut(ctx, uint32(stack[2+i]))
			if err != nil {
				panic(&Error{Module: e.name, Code: CodeBadResult, Err: fmt.Errorf("%s argument %d: %w", bf.name, i+1, err)})
			}
			args[i] = t
		}
		bctx := topdown.BuiltinContext{
			Context:  ctx,
			Metrics:  e.opa.metrics,
			Seed:     volatileReader{x},
			Time:     ast.UIntNumberTerm(uint64(time.Now().UnixNano())),
			Cache:    builtins.Cache{},
			Location: &ast.Location{File: e.name},
		}
		var out *ast.Term
		err := bf.fn(bctx, args, func(t *ast.Term) error { out = t; return nil })
		if err != nil {
			if _, halt := err.(topdown.Halt); halt {
				panic(&Error{Module: e.name, Code: CodeTrap, Err: fmt.Errorf("builtin %s: %w", bf.name, err)})
			}
			out = nil
		}
		if out == nil {
			stack[0] = 0
			return
		}
		addr, err := x.opaValueIn(ctx, []byte(out.String()), x.o.valueParse)
		if err != nil {
			panic(err)
		}
		stack[0] = uint64(addr)
	}
}

// resolveBuiltins maps the module's builtins export to OPA's Go
// implementations; a builtin the host lacks or refuses fails the load.
func resolveBuiltins(names map[string]int32) ([]opaBuiltinFunc, error) {
	var out []opaBuiltinFunc
	for _, name := range sortedKeys(names) {
		id := names[name]
		if id < 0 || id > 1<<16 {
			return nil, fmt.Errorf("builtin %s has id %d", name, id)
		}
		fn := topdown.GetBuiltin(name)
		switch {
		case opaRefused[name]:
			return nil, fmt.Errorf("compiled policy calls builtin %s, which Wasm policies may not use (no network)", name)
		case fn == nil:
			return nil, fmt.Errorf("compiled policy calls builtin %s, which this host does not provide", name)
		}
		for int(id) >= len(out) {
			out = append(out, opaBuiltinFunc{})
		}
		b := ast.BuiltinMap[name]
		out[id] = opaBuiltinFunc{name: name, fn: fn, volatile: b != nil && b.Nondeterministic}
	}
	return out, nil
}

// resolveEntrypoints finds, for every action, the entrypoints the module
// offers: sluice/<action>, or its rules allow, deny and reasons.
func resolveEntrypoints(ids map[string]int32) (map[policy.Action]opaEntry, error) {
	out := make(map[policy.Action]opaEntry, len(policy.Actions))
	found := false
	for _, a := range policy.Actions {
		get := func(name string) int32 {
			if id, ok := ids[name]; ok {
				found = true
				return id
			}
			return -1
		}
		base := "sluice/" + string(a)
		out[a] = opaEntry{pkg: get(base), allow: get(base + "/allow"), deny: get(base + "/deny"), reasons: get(base + "/reasons")}
	}
	if !found {
		return nil, fmt.Errorf("the module has none of the entrypoints sluice/<action> or sluice/<action>/allow (entrypoints: %v); build it with e.g. `opa build -t wasm -e sluice/resolve/allow -e sluice/resolve/reasons …`", sortedKeys(ids))
	}
	return out, nil
}

func sortedKeys(m map[string]int32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// opaResultSet is the JSON of an evaluation: one element with the value
// of the entrypoint, none when it is undefined.
type opaResultSet []struct {
	Result json.RawMessage `json:"result"`
}

// opaRaw are the JSON values of an action's allow, deny and reasons
// (empty: undefined). Defined: the module has an entrypoint for it.
type opaRaw struct {
	Allow, Deny, Reasons json.RawMessage
	Defined              bool
}

// decision folds the rules as the Rego backend does: allow only when
// allow is true and deny is empty; reasons are deny then reasons, each
// sorted; a deny without reasons says no allow rule matched.
func (r opaRaw) decision(action policy.Action) (policy.Decision, error) {
	var d policy.Decision
	d.Allow = string(r.Allow) == "true"
	deny, err := opaReasons(nil, r.Deny)
	if err != nil {
		return d, fmt.Errorf("sluice/%s/deny: %w", action, err)
	}
	if len(deny) > 0 {
		d.Allow = false
	}
	if d.Reasons, err = opaReasons(deny, r.Reasons); err != nil {
		return d, fmt.Errorf("sluice/%s/reasons: %w", action, err)
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []string{"no allow rule in data.sluice." + string(action) + " matched"}
	}
	return d, nil
}

// opaReasons appends the strings of a JSON set (an array) or string,
// other values in Rego syntax, sorted, as the Rego backend does.
func opaReasons(dst []string, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return dst, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	n := len(dst)
	add := func(x any) error {
		if s, ok := x.(string); ok {
			dst = append(dst, s)
			return nil
		}
		val, err := ast.InterfaceToValue(x)
		if err != nil {
			return err
		}
		dst = append(dst, val.String())
		return nil
	}
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			if err := add(x); err != nil {
				return nil, err
			}
		}
	case string:
		dst = append(dst, v)
	}
	slices.Sort(dst[n:])
	return dst, nil
}
