package wasm

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm/internal/abi"
	"github.com/sluice-oci/sluice/wasm/internal/instrument"
)

// opaInstance is the OPA ABI side of one instance.
type opaInstance struct {
	eval                                                                api.Function // opa_eval, nil: the opa_eval_ctx_* sequence
	malloc, jsonParse, jsonDump, valueParse, valueDump                  api.Function
	heapGet, heapSet                                                    api.Function
	ctxNew, ctxSetInput, ctxSetData, ctxSetEntry, ctxGetResult, evalCtx api.Function

	dataAddr uint32 // the data document, parsed once per instance
	heap     uint32 // heap pointer after the data: reset to it per decision
	stack    [7]uint64
}

// initOPA runs the start function, checks the OPA ABI version, reads the
// builtins and entrypoints (first instance only), and parses the data
// document into the instance's heap.
func (x *instance) initOPA(ctx context.Context) error {
	e, mod := x.e, x.mod
	if f := mod.ExportedFunction(instrument.StartExport); f != nil {
		if _, err := f.Call(ctx); err != nil {
			return e.newError(CodeInstantiate, fmt.Errorf("start: %w", err))
		}
	}
	major, minor := globalI32(mod, opaABIMajor), globalI32(mod, opaABIMinor)
	if major != 1 {
		return e.newError(CodeABIVersion, fmt.Errorf("module speaks OPA Wasm ABI %d.%d; this host speaks 1.x", major, minor))
	}
	f := mod.ExportedFunction
	o := &opaInstance{
		malloc: f(opaMalloc), jsonParse: f(opaJSONParse), jsonDump: f(opaJSONDump),
		valueParse: f(opaValueParse), valueDump: f(opaValueDump),
		heapGet: f(opaHeapPtrGet), heapSet: f(opaHeapPtrSet),
		ctxNew: f(opaCtxNew), ctxSetInput: f(opaCtxSetInput), ctxSetData: f(opaCtxSetData),
		ctxSetEntry: f(opaCtxSetEntry), ctxGetResult: f(opaCtxGetResult), evalCtx: f(opaEvalCtx),
	}
	if minor >= 2 && !e.cfg.opaCompat {
		o.eval = f(opaEval)
	}
	x.o = o
	e.opa.track(mod, x)
	if e.opa.entries == nil {
		var ids map[string]int32
		if err := x.opaExportJSON(ctx, opaEntrypoints, &ids); err != nil {
			return err
		}
		entries, err := resolveEntrypoints(ids)
		if err != nil {
			return e.newError(CodeABI, err)
		}
		var names map[string]int32
		if err := x.opaExportJSON(ctx, opaBuiltins, &names); err != nil {
			return err
		}
		fns, err := resolveBuiltins(names)
		if err != nil {
			return e.newError(CodeABI, err)
		}
		e.opa.entries, e.opa.builtins = entries, fns
	}
	if _, err := x.opaCall(ctx, o.malloc, 0); err != nil { // initialises the heap
		return err
	}
	addr, err := x.opaValueIn(ctx, e.data, o.jsonParse)
	if err != nil {
		return e.newError(CodeConfigure, fmt.Errorf("data document: %w", err))
	}
	o.dataAddr = addr
	heap, err := x.opaCall(ctx, o.heapGet)
	if err != nil {
		return err
	}
	o.heap = uint32(heap)
	return nil
}

func globalI32(mod api.Module, name string) int32 {
	g := mod.ExportedGlobal(name)
	if g == nil {
		return -1
	}
	return int32(g.Get())
}

// opaCall calls f, mapping a failure to a coded error.
func (x *instance) opaCall(ctx context.Context, f api.Function, params ...uint64) (uint64, error) {
	res, err := f.Call(ctx, params...)
	if err != nil {
		return 0, x.e.newError(x.classify(err), fmt.Errorf("%s: %w", f.Definition().Name(), err))
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0], nil
}

// opaExportJSON decodes the JSON of the value an export (builtins,
// entrypoints) returns.
func (x *instance) opaExportJSON(ctx context.Context, name string, v any) error {
	addr, err := x.opaCall(ctx, x.mod.ExportedFunction(name))
	if err != nil {
		return err
	}
	s, err := x.opaDump(ctx, uint32(addr), x.o.jsonDump)
	if err != nil {
		return x.e.newError(CodeBadResult, fmt.Errorf("%s: %w", name, err))
	}
	if err := json.Unmarshal(s, v); err != nil {
		return x.e.newError(CodeBadResult, fmt.Errorf("%s: %w", name, err))
	}
	return nil
}

// opaDump serializes the value at addr in the guest (opa_json_dump or
// opa_value_dump) and reads the string.
func (x *instance) opaDump(ctx context.Context, addr uint32, dump api.Function) ([]byte, error) {
	s, err := x.opaCall(ctx, dump, uint64(addr))
	if err != nil {
		return nil, err
	}
	return cString(x.mem, uint32(s), abi.MaxResultLen)
}

// opaValueOut reads the value at addr as a Rego term (a builtin argument).
func (x *instance) opaValueOut(ctx context.Context, addr uint32) (*ast.Term, error) {
	s, err := x.opaDump(ctx, addr, x.o.valueDump)
	if err != nil {
		return nil, err
	}
	return ast.ParseTerm(string(s))
}

// opaValueIn copies b into the guest heap and parses it there (with
// opa_json_parse or opa_value_parse), returning the value's address.
func (x *instance) opaValueIn(ctx context.Context, b []byte, parse api.Function) (uint32, error) {
	p, err := x.opaCall(ctx, x.o.malloc, uint64(len(b)))
	if err != nil {
		return 0, err
	}
	if !x.mem.Write(uint32(p), b) {
		return 0, x.e.newError(CodeOutOfBounds, fmt.Errorf("%s(%d) returned %d, outside guest memory", opaMalloc, len(b), p))
	}
	v, err := x.opaCall(ctx, parse, p, uint64(len(b)))
	if err != nil {
		return 0, err
	}
	if v == 0 {
		return 0, x.e.newError(CodeBadResult, fmt.Errorf("%s refused %d bytes", parse.Definition().Name(), len(b)))
	}
	return uint32(v), nil
}

// callOPA decides action: it writes the input above the data, evaluates
// the action's entrypoints and folds their results as the Rego backend
// does (allow only when allow is true and deny is empty; reasons are deny
// then reasons, each sorted).
func (x *instance) callOPA(ctx context.Context, action policy.Action, in *policy.Input) (policy.Decision, error) {
	e, o := x.e, x.o
	ent := e.opa.entries[action]
	in.Action = action
	x.buf = abi.AppendInput(x.buf[:0], in)
	if o.eval != nil {
		// The input sits at the heap pointer; opa_eval resets the heap to
		// just above it on every call.
		end := uint64(o.heap) + uint64(len(x.buf))
		if size := uint64(x.mem.Size()); end > size {
			if _, ok := x.mem.Grow(uint32((end - size + instrument.PageBytes - 1) / instrument.PageBytes)); !ok {
				return policy.Decision{}, e.newError(CodeMemoryLimit, fmt.Errorf("input of %d bytes does not fit under the memory cap", len(x.buf)))
			}
		}
		x.mem.Write(o.heap, x.buf)
	}
	var r opaRaw
	if ent.pkg >= 0 {
		rs, err := x.opaEvalEntry(ctx, ent.pkg)
		if err != nil {
			return policy.Decision{}, err
		}
		if len(rs) > 0 {
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(rs[0].Result, &doc); err != nil {
				return policy.Decision{}, e.newError(CodeBadResult, fmt.Errorf("sluice/%s: %w", action, err))
			}
			r = opaRaw{Allow: doc["allow"], Deny: doc["deny"], Reasons: doc["reasons"], Defined: true}
		}
	} else {
		for _, p := range []struct {
			id  int32
			dst *json.RawMessage
		}{{ent.allow, &r.Allow}, {ent.deny, &r.Deny}, {ent.reasons, &r.Reasons}} {
			if p.id < 0 {
				continue
			}
			r.Defined = true
			rs, err := x.opaEvalEntry(ctx, p.id)
			if err != nil {
				return policy.Decision{}, err
			}
			if len(rs) > 0 {
				*p.dst = rs[0].Result
			}
		}
	}
	if !r.Defined {
		return policy.Decision{}, e.newError(CodeABI, fmt.Errorf("module has no entrypoint sluice/%s or sluice/%s/allow", action, action))
	}
	d, err := r.decision(action)
	if err != nil {
		return policy.Decision{}, e.newError(CodeBadResult, err)
	}
	return d, nil
}

// opaEvalEntry evaluates one entrypoint against the input in x.buf and
// returns its result set (its bytes copied out of guest memory).
func (x *instance) opaEvalEntry(ctx context.Context, entry int32) (opaResultSet, error) {
	e, o := x.e, x.o
	var addr uint64
	if o.eval != nil {
		n := uint64(len(x.buf))
		o.stack = [7]uint64{0, uint64(entry), uint64(o.dataAddr), uint64(o.heap), n, uint64(o.heap) + n, 0}
		if err := o.eval.CallWithStack(ctx, o.stack[:]); err != nil {
			return nil, e.newError(x.classify(err), fmt.Errorf("%s: %w", opaEval, err))
		}
		addr = o.stack[0]
	} else {
		var err error
		if addr, err = x.opaEvalCompat(ctx, entry); err != nil {
			return nil, err
		}
	}
	s, err := cString(x.mem, uint32(addr), abi.MaxResultLen)
	if err != nil {
		return nil, e.newError(CodeBadResult, err)
	}
	var rs opaResultSet
	if err := json.Unmarshal(s, &rs); err != nil {
		return nil, e.newError(CodeBadResult, fmt.Errorf("result set: %w", err))
	}
	return rs, nil
}

// opaEvalCompat is an evaluation through the opa_eval_ctx_* sequence of
// ABI 1.0 and 1.1, after resetting the heap; it returns the address of
// the result set's JSON.
func (x *instance) opaEvalCompat(ctx context.Context, entry int32) (uint64, error) {
	e, o := x.e, x.o
	if _, err := x.opaCall(ctx, o.heapSet, uint64(o.heap)); err != nil {
		return 0, err
	}
	c, err := x.opaCall(ctx, o.ctxNew)
	if err != nil {
		return 0, err
	}
	if _, err := x.opaCall(ctx, o.ctxSetData, c, uint64(o.dataAddr)); err != nil {
		return 0, err
	}
	if _, err := x.opaCall(ctx, o.ctxSetEntry, c, uint64(entry)); err != nil {
		return 0, err
	}
	in, err := x.opaValueIn(ctx, x.buf, o.jsonParse)
	if err != nil {
		return 0, err
	}
	if _, err := x.opaCall(ctx, o.ctxSetInput, c, uint64(in)); err != nil {
		return 0, err
	}
	rc, err := x.opaCall(ctx, o.evalCtx, c)
	if err != nil {
		return 0, err
	}
	if int32(rc) != 0 {
		return 0, e.newError(CodeTrap, fmt.Errorf("%s returned error code %d", opaEvalCtx, int32(rc)))
	}
	res, err := x.opaCall(ctx, o.ctxGetResult, c)
	if err != nil {
		return 0, err
	}
	return x.opaCall(ctx, o.jsonDump, res)
}
