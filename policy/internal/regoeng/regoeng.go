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
	"sync"

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
	reads   []InputRead     // see InputReads
	readsOK bool

	decisionReads   []InputRead // see DecisionReads
	decisionReadsOK bool
	nondet          []string // see Nondeterministic
}

// query holds the prepared queries of one action.
//
// pq is the full query: an array of the rules of the package that exist,
// in the order allow, deny, reasons; -1 marks a rule the package does not
// define. It is the reference semantics, and it answers every decision
// that does not allow.
//
// hot, when set, answers the common case cheaply: it says only whether
// the decision allows (see hotQuery). When the package has deny rules, or
// reasons rules that may hold while allow does, there is no hot query. A
// decision the hot query does not allow is evaluated again by the full
// query, which then decides and gives the reasons.
type query struct {
	pq                   rego.PreparedEvalQuery
	hot                  *hotQuery
	hotAction            ast.String // the input.action hot was specialized for
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
	// OPA's partial evaluation and query compiler write to shared
	// (interned) terms in place (ast.transformTerm), which races with any
	// other compile reading them: build one engine at a time.
	buildMu.Lock()
	defer buildMu.Unlock()
	var reads inputAnalysis
	compiler, err := compile(modules, &reads)
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
		if compiler, err = compile(extra, &reads); err != nil {
			return nil, err
		}
		modules = extra
	}
	store := inmem.NewFromObject(data)
	e := &Engine{queries: make(map[string]*query, len(actions)), metrics: metrics.NoOp()}
	e.reads, e.readsOK = reads.reads()
	e.decisionReads, e.decisionReadsOK = decisionReads(&reads, compiler, actions)
	e.nondet = nondeterministic(compiler)
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
		if q.allow >= 0 && q.deny < 0 && reasonsNeedDeny(compiler, action) {
			// A failed partial evaluation leaves the full query to answer.
			unknowns := e.unknowns()
			if hot, err := prepareHot(ctx, compiler, modules, store, action, unknowns); err == nil {
				q.hot = hot
				if unknowns != nil {
					q.hotAction = ast.String(action)
				}
			}
		}
		e.queries[action] = q
	}
	return e, nil
}

// unknowns are the top-level input fields the set reads, but action, as
// partial evaluation's unknowns ("input.reference", …); nil when the set
// may read anything of the input.
func (e *Engine) unknowns() []string {
	if !e.readsOK {
		return nil
	}
	out := []string{}
	for _, r := range e.reads {
		if f := "input." + r.Path[0]; r.Path[0] != "action" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// Nondeterministic lists, sorted, the builtins the policy set calls that
// OPA marks non-deterministic (time.now_ns, http.send, rand.intn, …):
// their results change between evaluations of the same input, so a
// decision of such a set must not be cached. Every module counts, called
// or not, and a builtin mocked by a with modifier too.
func (e *Engine) Nondeterministic() []string { return slices.Clone(e.nondet) }

// nondeterministic reads the builtins the compiler found the modules to
// need (its type checker records every builtin call) and the builtins a
// with modifier puts in place of a function (`with f as rand.intn`),
// which the type checker does not count as calls.
func nondeterministic(c *ast.Compiler) []string {
	var out []string
	add := func(b *ast.Builtin) {
		if b != nil && (b.Nondeterministic || clockDependent[b.Name]) {
			out = append(out, b.Name)
		}
	}
	if c.Required != nil {
		for _, b := range c.Required.Builtins {
			add(b)
		}
	}
	for _, m := range c.Modules {
		ast.WalkWiths(m, func(w *ast.With) bool {
			switch v := w.Value.Value.(type) {
			case ast.Ref, ast.Var:
				add(ast.BuiltinMap[v.String()])
			}
			return false
		})
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// clockDependent are builtins OPA does not mark non-deterministic that
// still read the clock: certificate validity is checked against now.
var clockDependent = map[string]bool{
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

// reasonsNeedDeny reports whether every reasons rule of the action's
// package holds only when allow does not (its body has the literal
// "not allow"), so that an allowing decision has no reasons.
func reasonsNeedDeny(compiler *ast.Compiler, action string) bool {
	allow := ruleRef(action, "allow")
	for _, r := range compiler.GetRulesExact(ruleRef(action, "reasons")) {
		found := false
		for _, expr := range r.Body {
			t, ok := expr.Terms.(*ast.Term)
			if !expr.Negated || !ok || len(expr.With) > 0 {
				continue
			}
			if ref, ok := t.Value.(ast.Ref); ok && ref.Equal(allow) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var buildMu sync.Mutex

// compile compiles modules; reads receives what they read of the input.
func compile(modules map[string]*ast.Module, reads *inputAnalysis) (*ast.Compiler, error) {
	compiler := ast.NewCompiler().WithStageAfterID(analyzeAfter, analyzeStage(reads))
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, compiler.Errors
	}
	return compiler, nil
}

// ruleRef is data.sluice.<action>.<rule>, built from fresh terms: the
// query compiler rewrites terms in place, so a shared one such as
// ast.DefaultRootDocument must not end up in a query (a data race between
// concurrent loads).
func ruleRef(action, rule string) ast.Ref {
	return ast.Ref{ast.VarTerm(ast.DefaultRootDocument.Value.(ast.Var).String()), ast.StringTerm("sluice"), ast.StringTerm(action), ast.StringTerm(rule)}
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
	vc := getFlatCache()
	defer vc.put()
	var cancel topdown.Cancel = noCancel{}
	if ctx.Done() != nil {
		// Cancel through context.AfterFunc rather than the goroutine OPA
		// starts per evaluation when no external cancel is given.
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		cancel = c
	}
	if q.hot != nil && q.hotFor(input) && q.hot.allows(ctx, input, cancel, vc) {
		return Result{Allow: true}, nil
	}
	// Not allowed, undefined or an error: the full query decides.
	rs, err := q.pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalMetrics(e.metrics), rego.EvalVirtualCache(vc), rego.EvalExternalCancel(cancel))
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

// hotFor reports whether the hot query answers for input: its action is
// the one the query was specialized for.
func (q *query) hotFor(input ast.Value) bool {
	if q.hotAction == "" {
		return true
	}
	o, ok := input.(ast.Object)
	if !ok {
		return false
	}
	t := o.Get(actionKey)
	if t == nil {
		return false
	}
	s, ok := t.Value.(ast.String)
	return ok && s == q.hotAction
}

var actionKey = ast.StringTerm("action")

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
