package regoeng

import (
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// residual is the output of partial evaluation, rewritten for a cheaper
// evaluation that means the same: the queries (allow when any body
// succeeds) and their support rules under data.<partialNS>.
//
// Partial evaluation leaves the allow rule of a package of restrictions
// as nested negations of support rules (allow if not violated, violated
// if not shared or a latest tag, …); OPA evaluates each support rule as a
// virtual document (rule lookup, index, memo), which was most of a
// decision's cost. The rewrites here replace a reference to a support
// rule r whose values are all true (complete, no arguments, no else, no
// with, a default only of false) by its bodies b1…bn, using identities of
// Rego's semantics and OPA's own body expressions:
//
//   - inlineQueries: a query that is only "r == true" (or "r") becomes the
//     queries b1…bn (a default false never equals true);
//   - "not r" becomes, by De Morgan, "not { b1 }; …; not { bn }", and a
//     body that is only "not e", e without variables, becomes "e" (an
//     expression succeeds when defined and not false, so "not not e" is
//     e). A positive expression is never complemented in place: the
//     compiler evaluates its operands (input.x, a nested call) before a
//     "not e", so an undefined operand would fail the body where the rule
//     it came from was merely undefined; inside "not { }" they stay in
//     the negation;
//   - "r" (n ≥ 2) becomes "(b1) or (b2 or …)", and with one body of one
//     expression without variables, that expression.
//
// Bodies keep their own variables inside "not { }" and "or" (closures),
// and only expressions without variables (the roots input and data, and
// the names of called functions aside) are moved into another body, so
// no binding crosses a body.
type residual struct {
	queries []ast.Body
	support []*ast.Module
	rules   map[string][]*ast.Rule // support rules by the path they define
	vars    int                    // fresh variables handed out
}

// maxBodyExprs bounds how far flatten grows one body.
const maxBodyExprs = 64

func newResidual(pq *rego.PartialQueries) *residual {
	r := &residual{queries: pq.Queries, support: pq.Support, rules: map[string][]*ast.Rule{}}
	for _, m := range pq.Support {
		for _, rule := range m.Rules {
			p := rule.Ref().String()
			r.rules[p] = append(r.rules[p], rule)
		}
	}
	return r
}

// trueRule returns the non-default rules defining the document at ref when
// it is a support rule whose every value is true: complete, no arguments,
// no else, no with modifiers, a default (if any) of false.
func (r *residual) trueRule(ref ast.Ref) (rules []*ast.Rule, ok bool) {
	if !ref.IsGround() || !ref.HasPrefix(partialRef) {
		return nil, false
	}
	all := r.rules[ref.String()]
	if len(all) == 0 {
		return nil, false
	}
	for _, rule := range all {
		if rule.Default {
			if rule.Head.Value == nil || !rule.Head.Value.Equal(ast.BooleanTerm(false)) {
				return nil, false
			}
			continue
		}
		if rule.Else != nil || len(rule.Head.Args) > 0 || rule.Head.Key != nil || rule.Head.Value == nil ||
			!rule.Head.Value.Equal(ast.BooleanTerm(true)) || !rule.Ref().Equal(ref) || hasWith(rule.Body) {
			return nil, false
		}
		rules = append(rules, rule)
	}
	// A path that is also the prefix of another support rule is an
	// object, not a boolean.
	for p, rs := range r.rules {
		if p != ref.String() && rs[0].Ref().HasPrefix(ref) {
			return nil, false
		}
	}
	return rules, len(rules) > 0
}

var partialRef = ast.Ref{ast.DefaultRootDocument, ast.StringTerm(partialNS)}

// inlineQueries replaces a query "r == true" (or "r") by r's bodies.
func (r *residual) inlineQueries() {
	var out []ast.Body
	for _, q := range r.queries {
		ref, ok := queryRef(q)
		if !ok {
			out = append(out, q)
			continue
		}
		rules, ok := r.trueRule(ref)
		if !ok {
			out = append(out, q)
			continue
		}
		for _, rule := range rules {
			out = append(out, rule.Body.Copy())
		}
	}
	r.queries = out
}

// queryRef returns ref when the query is the single expression "ref" or
// "ref == true" / "ref = true".
func queryRef(q ast.Body) (ast.Ref, bool) {
	if len(q) != 1 || q[0].Negated || len(q[0].With) > 0 {
		return nil, false
	}
	e := q[0]
	if t, ok := e.Terms.(*ast.Term); ok {
		ref, ok := t.Value.(ast.Ref)
		return ref, ok
	}
	if !e.IsEquality() && !e.IsCall() {
		return nil, false
	}
	op := e.Operator()
	if !op.Equal(ast.Equality.Ref()) && !op.Equal(ast.Equal.Ref()) {
		return nil, false
	}
	a, b := e.Operand(0), e.Operand(1)
	if a == nil || b == nil {
		return nil, false
	}
	if _, ok := a.Value.(ast.Boolean); ok {
		a, b = b, a
	}
	ref, ok := a.Value.(ast.Ref)
	if !ok || !b.Equal(ast.BooleanTerm(true)) {
		return nil, false
	}
	return ref, true
}

// flatten rewrites references to support rules in the queries and the
// support bodies until none applies (support rules are not recursive, so
// it ends; the expression bound keeps a pathological residual small).
func (r *residual) flatten() {
	for i := range r.queries {
		r.queries[i] = r.flattenBody(r.queries[i])
	}
	for _, m := range r.support {
		for _, rule := range m.Rules {
			rule.Body = r.flattenBody(rule.Body)
		}
	}
}

func (r *residual) flattenBody(body ast.Body) ast.Body {
	for range maxBodyExprs {
		i, repl := -1, []*ast.Expr(nil)
		for j, e := range body {
			if x, ok := r.inline(e); ok && len(body)-1+len(x) <= maxBodyExprs {
				i, repl = j, x
				break
			}
		}
		if i < 0 {
			break
		}
		out := make(ast.Body, 0, len(body)-1+len(repl))
		out = append(out, body[:i]...)
		out = append(out, repl...)
		out = append(out, body[i+1:]...)
		for j, x := range out {
			x.Index = j
		}
		body = out
	}
	return body
}

// inline returns the expressions that mean the same as e, "r" or
// "not r", without the support rule r.
func (r *residual) inline(e *ast.Expr) ([]*ast.Expr, bool) {
	if len(e.With) > 0 {
		return nil, false
	}
	t, ok := e.Terms.(*ast.Term)
	if !ok {
		return nil, false
	}
	ref, ok := t.Value.(ast.Ref)
	if !ok {
		return nil, false
	}
	rules, ok := r.trueRule(ref)
	if !ok {
		return nil, false
	}
	var out []*ast.Expr
	if e.Negated {
		for _, rule := range rules {
			if len(rule.Body) == 1 && rule.Body[0].Negated && movable(rule.Body[0]) {
				out = append(out, rule.Body[0].Copy().Complement())
				continue
			}
			out = append(out, ast.NewExpr(&ast.Not{Body: r.fresh(rule.Body), ExplicitBody: true, Location: e.Location}))
		}
	} else {
		if len(rules) == 1 {
			if len(rules[0].Body) != 1 || !movable(rules[0].Body[0]) {
				return nil, false
			}
			out = append(out, rules[0].Body[0].Copy())
		} else {
			or := &ast.LogicalOr{Lhs: r.fresh(rules[len(rules)-2].Body), Rhs: r.fresh(rules[len(rules)-1].Body), ExplicitLhs: true, ExplicitRhs: true, Location: e.Location}
			for i := len(rules) - 3; i >= 0; i-- {
				or = &ast.LogicalOr{Lhs: r.fresh(rules[i].Body), Rhs: ast.NewBody(ast.NewExpr(or)), ExplicitLhs: true, Location: e.Location}
			}
			out = append(out, ast.NewExpr(or))
		}
	}
	for _, x := range out {
		x.Location = e.Location
	}
	return out, true
}

// fresh copies body with its variables renamed to names used nowhere
// else: inlined next to other bodies, a variable of the rule must not
// meet a variable of the same name bound outside (partial evaluation does
// not promise names unique across its queries and support rules).
// Wildcards stay: each is its own variable already.
func (r *residual) fresh(body ast.Body) ast.Body {
	cp := body.Copy()
	names := map[ast.Var]ast.Var{}
	for v := range cp.Vars(ast.VarVisitorParams{SkipRefCallHead: true}) {
		if v.IsWildcard() || v.Equal(ast.DefaultRootDocument.Value) || v.Equal(ast.InputRootDocument.Value) {
			continue
		}
		names[v] = ast.Var("__sluice_v" + strconv.Itoa(r.vars) + "__")
		r.vars++
	}
	out, err := ast.TransformVars(cp, func(v ast.Var) (ast.Value, error) {
		if n, ok := names[v]; ok {
			return n, nil
		}
		return v, nil
	})
	if err != nil {
		return cp
	}
	return out.(ast.Body)
}

// movable reports whether e can be complemented outside its body: a plain
// term or call with no variables (the roots input and data aside, and the
// names of the functions it calls) and no with modifier.
func movable(e *ast.Expr) bool {
	if len(e.With) > 0 {
		return false
	}
	switch e.Terms.(type) {
	case *ast.Term, []*ast.Term:
	default:
		return false
	}
	return len(e.Vars(ast.VarVisitorParams{SkipRefHead: true, SkipRefCallHead: true})) == 0
}

// readsOutside reports whether the residual refers to documents under
// data other than its own support rules.
func (r *residual) readsOutside() bool {
	outside := false
	visit := func(x any) {
		ast.WalkRefs(x, func(ref ast.Ref) bool {
			if ref.HasPrefix(ast.DefaultRootRef) && !ref.HasPrefix(partialRef) {
				outside = true
			}
			return outside
		})
	}
	for _, q := range r.queries {
		visit(q)
	}
	for _, m := range r.support {
		visit(m)
	}
	return outside
}

// hasWith reports whether an expression of body has a with modifier.
func hasWith(body ast.Body) bool {
	for _, e := range body {
		if len(e.With) > 0 {
			return true
		}
	}
	return false
}
