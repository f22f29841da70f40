// Package regoeng compiles Rego modules and data into one OPA policy set
// and evaluates it with one prepared query per action. It knows nothing of
// the policy facade's types, so the facade can import it without a cycle.
package regoeng

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrUndefined is returned when the package of an action defines nothing.
var ErrUndefined = errors.New("policy package is undefined")

// PackagePrefix is the data path of the action packages: data.sluice.<action>.
const PackagePrefix = "data.sluice."

// Result is the outcome of one evaluation.
type Result struct {
	Allow   bool
	Reasons []string
}

// Engine holds the prepared queries of one compiled policy set. It is safe
// for concurrent use.
type Engine struct {
	queries map[string]*query
	metrics metrics.Metrics // a no-op: OPA would allocate one per evaluation
}

// query is the prepared query of one action: an array of the rules of
// its package that exist, in the order allow, deny, reasons; -1 marks a
// rule the package does not define.
type query struct {
	pq                   rego.PreparedEvalQuery
	allow, deny, reasons int
	undefined            bool // the package defines none of them
}

// New compiles modules (keyed by file name, used in error locations) with
// data as the base documents and prepares one query per action. A compile
// failure returns the compiler's ast.Errors, each with its Location.
//
// An action package whose allow rules have no default gets
// "default allow := false", so an allow that does not hold is false
// rather than undefined.
func New(ctx context.Context, modules map[string]*ast.Module, data map[string]any, actions []string) (*Engine, error) {
	compiler, err := compile(modules)
	if err != nil {
		return nil, err
	}
	var extra map[string]*ast.Module
	for _, action := range actions {
		rules := compiler.GetRulesExact(ruleRef(action, "allow"))
		if len(rules) == 0 || slices.ContainsFunc(rules, func(r *ast.Rule) bool { return r.Default }) {
			continue
		}
		if extra == nil {
			extra = maps.Clone(modules)
		}
		name := "sluice-default-allow/" + action + ".rego"
		m, err := ast.ParseModuleWithOpts(name, "package sluice."+action+"\ndefault allow := false\n", ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, err
		}
		extra[name] = m
	}
	if extra != nil {
		if compiler, err = compile(extra); err != nil {
			return nil, err
		}
	}
	store := inmem.NewFromObject(data)
	e := &Engine{queries: make(map[string]*query, len(actions)), metrics: metrics.NoOp()}
	for _, action := range actions {
		q := &query{allow: -1, deny: -1, reasons: -1}
		var elems []*ast.Term
		for _, name := range []string{"allow", "deny", "reasons"} {
			ref := ruleRef(action, name)
			if len(compiler.GetRulesExact(ref)) == 0 {
				continue
			}
			switch name {
			case "allow":
				q.allow = len(elems)
			case "deny":
				q.deny = len(elems)
			case "reasons":
				q.reasons = len(elems)
			}
			elems = append(elems, ast.RefTerm(ref...))
		}
		q.undefined = len(elems) == 0
		body := ast.NewBody(ast.NewExpr(ast.ArrayTerm(elems...)))
		pq, err := rego.New(
			rego.ParsedQuery(body),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.GenerateJSON(keepTerm),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("prepare %s%s: %w", PackagePrefix, action, err)
		}
		q.pq = pq
		e.queries[action] = q
	}
	return e, nil
}

func compile(modules map[string]*ast.Module) (*ast.Compiler, error) {
	compiler := ast.NewCompiler()
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, compiler.Errors
	}
	return compiler, nil
}

func ruleRef(action, rule string) ast.Ref {
	return ast.Ref{ast.DefaultRootDocument, ast.StringTerm("sluice"), ast.StringTerm(action), ast.StringTerm(rule)}
}

// keepTerm hands the result term back as is: the caller reads the ast
// object directly instead of a JSON-like copy.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// Eval evaluates the package of action against input. The context's
// deadline and cancellation stop the evaluation.
func (e *Engine) Eval(ctx context.Context, action string, input ast.Value) (Result, error) {
	q, ok := e.queries[action]
	if !ok {
		return Result{}, fmt.Errorf("no prepared query for action %q", action)
	}
	if q.undefined {
		return Result{}, fmt.Errorf("%s%s: %w", PackagePrefix, action, ErrUndefined)
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalMetrics(e.metrics)}
	if ctx.Done() != nil {
		// Cancel through context.AfterFunc rather than the goroutine OPA
		// starts per evaluation when no external cancel is given.
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		opts = append(opts, rego.EvalExternalCancel(c))
	} else {
		opts = append(opts, rego.EvalExternalCancel(noCancel{}))
	}
	rs, err := q.pq.Eval(ctx, opts...)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Result{}, fmt.Errorf("%w: %w", ctxErr, err)
		}
		return Result{}, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Result{}, fmt.Errorf("%s%s: %w", PackagePrefix, action, ErrUndefined)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Result{}, fmt.Errorf("%s%s: unexpected result %T", PackagePrefix, action, rs[0].Expressions[0].Value)
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return Result{}, fmt.Errorf("%s%s: unexpected result %s", PackagePrefix, action, ast.ValueName(t.Value))
	}
	return q.result(action, arr), nil
}

func (q *query) result(action string, arr *ast.Array) Result {
	var r Result
	if q.allow >= 0 {
		b, ok := arr.Elem(q.allow).Value.(ast.Boolean)
		r.Allow = ok && bool(b)
	}
	var deny []string
	if q.deny >= 0 {
		deny = appendStrings(nil, arr.Elem(q.deny))
	}
	if len(deny) > 0 {
		r.Allow = false
	}
	r.Reasons = deny
	if q.reasons >= 0 {
		r.Reasons = appendStrings(r.Reasons, arr.Elem(q.reasons))
	}
	if !r.Allow && len(r.Reasons) == 0 {
		r.Reasons = []string{"no allow rule in " + PackagePrefix + action + " matched"}
	}
	return r
}

// appendStrings appends the elements of a set or array term, strings as
// they are and other values in Rego syntax, sorted for stable output.
func appendStrings(dst []string, t *ast.Term) []string {
	if t == nil {
		return dst
	}
	n := len(dst)
	add := func(x *ast.Term) {
		if s, ok := x.Value.(ast.String); ok {
			dst = append(dst, string(s))
			return
		}
		dst = append(dst, x.String())
	}
	switch v := t.Value.(type) {
	case ast.Set:
		v.Foreach(add)
	case *ast.Array:
		v.Foreach(add)
	case ast.String:
		add(t)
	}
	sort.Strings(dst[n:])
	return dst
}

type noCancel struct{}

func (noCancel) Cancel()         {}
func (noCancel) Cancelled() bool { return false }
