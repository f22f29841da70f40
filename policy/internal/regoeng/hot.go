package regoeng

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// hotQuery answers only "does this decision allow?", cheaply: it is
// data.sluice.<action>.allow == true partially evaluated at load against
// an unknown input (data known), so that what depends on data alone
// (settings, helper rules) is folded away, and the residual then
// flattened (see flatten). It allows when one of its bodies succeeds.
//
// It runs on OPA's evaluator (topdown) directly, without the rego
// package's per-evaluation set-up, against a compiler that holds only the
// residual's support rules (and the policy's own modules when the
// residual still reads them).
type hotQuery struct {
	bodies   []ast.Body // compiled queries; allow when any succeeds
	always   bool       // a body is empty: every input of the action allows
	compiler *ast.Compiler
	store    storage.Store // nil when the bodies read nothing under data
	metrics  metrics.Metrics
}

// hotBudget bounds the partial evaluation of one action at load: a policy
// that computes much from data alone is left to the full query rather
// than delaying a load or reload.
const hotBudget = 250 * time.Millisecond

// partialNS is the package the residual's support rules are written to.
const partialNS = "__sluice_hot__"

// prepareHot partially evaluates data.sluice.<action>.allow == true with
// input unknown, flattens the residual and compiles it. Non-deterministic
// builtins (time, http.send, rand) are kept for evaluation time. With
// unknowns given (the top-level input fields the set reads, but action),
// the input is {"action": action} and those fields unknown: the rules and
// branches of other actions fold away, and the residual is only valid for
// inputs of that action (Eval checks).
func prepareHot(ctx context.Context, compiler *ast.Compiler, modules map[string]*ast.Module, store storage.Store, action string, unknowns []string) (*hotQuery, error) {
	ctx, cancel := context.WithTimeout(ctx, hotBudget)
	defer cancel()
	query := ast.NewBody(ast.Equality.Expr(ast.RefTerm(ruleRef(action, "allow")...), ast.BooleanTerm(true)))
	opts := []func(*rego.Rego){
		rego.ParsedQuery(query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.NondeterministicBuiltins(false),
		rego.PartialNamespace(partialNS),
		// Without shallow inlining, partial evaluation inlines rules and
		// copy-propagates "x := input.y" into its uses, under "not" too:
		// "x := input.y; not x == 2" became "not input.y = 2", which holds
		// when input.y is missing, where the policy refuses. It also
		// inlined only the definitions of a rule that agree with the
		// query, losing the conflict of two that disagree. Shallow, every
		// rule that reads the input stays a support rule, evaluated as
		// written; flatten inlines those whose meaning it can keep.
		rego.ShallowInlining(true),
	}
	if unknowns != nil {
		opts = append(opts, rego.ParsedInput(ast.NewObject([2]*ast.Term{ast.StringTerm("action"), ast.StringTerm(action)})),
			rego.Unknowns(unknowns))
	} else {
		opts = append(opts, rego.Unknowns([]string{"input"}))
	}
	pq, err := rego.New(opts...).Partial(ctx)
	if err != nil {
		return nil, err
	}
	if len(pq.Queries) == 0 {
		return nil, errors.New("allow never holds")
	}
	r := newResidual(pq)
	r.inlineQueries()
	r.flatten()

	mods := make(map[string]*ast.Module, len(r.support)+len(modules))
	for i, m := range r.support {
		mods["__sluice_hot_"+strconv.Itoa(i)+"__"] = m
	}
	if r.readsOutside() {
		// The residual still reads rules of the policy (a rule partial
		// evaluation kept, such as one calling a non-deterministic
		// builtin): compile it with copies of the policy's modules.
		for name, m := range modules {
			mods[name] = m.Copy()
		}
	}
	c := ast.NewCompiler()
	c.Compile(mods)
	if c.Failed() {
		return nil, fmt.Errorf("compile residual: %w", c.Errors)
	}
	h := &hotQuery{compiler: c, metrics: metrics.NoOp()}
	if readsData(r.queries) {
		h.store = store
	}
	qc := c.QueryCompiler()
	for _, body := range r.queries {
		if len(body) == 0 {
			h.always = true
			return h, nil
		}
		compiled, err := qc.Compile(body)
		if err != nil {
			return nil, fmt.Errorf("compile residual query: %w", err)
		}
		h.bodies = append(h.bodies, compiled)
	}
	return h, nil
}

// readsData reports whether a body refers to a document under data (a
// support rule or the policy's data): without, the evaluation needs no
// storage transaction.
func readsData(bodies []ast.Body) bool {
	found := false
	for _, b := range bodies {
		ast.WalkRefs(b, func(ref ast.Ref) bool {
			found = found || ref.HasPrefix(ast.DefaultRootRef)
			return found
		})
		ast.WalkVars(b, func(v ast.Var) bool {
			found = found || v.Equal(ast.DefaultRootDocument.Value)
			return found
		})
	}
	return found
}

// allows reports whether a body of the hot query succeeds for input. An
// error (cancellation, a conflict, a builtin error under strict mode)
// counts as not allowing, and so does an error in a body before the one
// that succeeds: the full query, which meets it too, then decides and
// reports it. A body runs to its end rather than stopping at its first
// result: the evaluator finds that two definitions of a rule disagree
// only after handing out the first one's value.
func (h *hotQuery) allows(ctx context.Context, input ast.Value, cancel topdown.Cancel, vc topdown.VirtualCache) bool {
	if h.always {
		return true
	}
	var txn storage.Transaction
	if h.store != nil {
		var err error
		if txn, err = h.store.NewTransaction(ctx); err != nil {
			return false
		}
		defer h.store.Abort(ctx, txn)
	}
	in := ast.NewTerm(input)
	found := false
	for _, body := range h.bodies {
		q := topdown.NewQuery(body).WithCompiler(h.compiler)
		if txn != nil {
			q = q.WithStore(h.store).WithTransaction(txn)
		}
		err := q.WithInput(in).
			WithMetrics(h.metrics).
			WithCancel(cancel).
			WithIndexing(true).
			WithEarlyExit(true).
			WithVirtualCache(vc).
			Iter(ctx, func(topdown.QueryResult) error { found = true; return nil })
		if err != nil {
			return false
		}
		if found {
			return true
		}
	}
	return false
}
