package regoeng

import (
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
//   - "r" (n ≥ 2) becomes "(b1) or (b2 or …)", and with one body, that
//     body's expressions (its variables renamed fresh).
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
	inlines int                    // references replaced
}

// maxBodyExprs bounds how far flatten grows one body, maxInlines how
// many references it replaces in all (support rules are not recursive,
// but one may be referred to many times, at many depths).
const (
	maxBodyExprs = 64
	maxInlines   = 512
)

func newResidual(pq *rego.PartialQueries) *residual {
	r := &residual{queries: pq.Queries, support: pq.Support, rules: map[string][]*ast.Rule{}}
	for _, m := range pq.Support {
		for _, rule := range m.Rules {
			p := rule.Ref().String()
			r.rules[p] = append(r.rules[p], rule)
			rule.Body = normalize(rule.Body)
		}
	}
	for i := range r.queries {
		r.queries[i] = normalize(r.queries[i])
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
// support bodies, and in the bodies of "not { }" and "or" inside them,
// until none applies (support rules are not recursive, so it ends; the
// bounds keep a pathological residual small).
func (r *residual) flatten() {
	for i := range r.queries {
		r.queries[i] = r.flattenBody(r.queries[i], nil)
	}
	for _, m := range r.support {
		for _, rule := range m.Rules {
			rule.Body = r.flattenBody(rule.Body, nil)
		}
	}
}

// flattenBody flattens body; outer are the variables of the bodies it is
// nested in (a closure sees them).
func (r *residual) flattenBody(body ast.Body, outer ast.VarSet) ast.Body {
	for range maxBodyExprs {
		i, repl := -1, []*ast.Expr(nil)
		for j, e := range body {
			if r.inlines >= maxInlines {
				break
			}
			if x, ok := r.inline(e, body, outer); ok && len(body)-1+len(x) <= maxBodyExprs {
				i, repl = j, x
				break
			}
		}
		if i < 0 {
			break
		}
		r.inlines++
		out := make(ast.Body, 0, len(body)-1+len(repl))
		out = append(out, body[:i]...)
		out = append(out, repl...)
		out = append(out, body[i+1:]...)
		for j, x := range out {
			x.Index = j
		}
		body = out
	}
	var vars ast.VarSet
	for _, e := range body {
		switch x := e.Terms.(type) {
		case *ast.Not:
			if vars == nil {
				vars = bodyVars(body, outer)
			}
			x.Body = r.flattenBody(x.Body, vars)
		case *ast.LogicalOr:
			if vars == nil {
				vars = bodyVars(body, outer)
			}
			x.Lhs = r.flattenBody(x.Lhs, vars)
			x.Rhs = r.flattenBody(x.Rhs, vars)
		}
	}
	return body
}

// bodyVars is outer and the variables of body.
func bodyVars(body ast.Body, outer ast.VarSet) ast.VarSet {
	vs := ast.NewVarSet()
	vs.Update(outer)
	ast.WalkVars(body, func(v ast.Var) bool {
		vs.Add(v)
		return false
	})
	return vs
}

// inline returns the expressions that mean the same as e, without the
// support rule it refers to: e is "r" or "not r" for a rule r whose
// values are all true, or "not { S[k] = v }" for a set S of constant
// elements, k and v local to it (S has an element when one of its bodies
// succeeds). body is the body e is in, outer the variables of the bodies
// around it.
func (r *residual) inline(e *ast.Expr, body ast.Body, outer ast.VarSet) ([]*ast.Expr, bool) {
	if len(e.With) > 0 {
		return nil, false
	}
	var rules []*ast.Rule
	negated := e.Negated
	switch t := e.Terms.(type) {
	case *ast.Term:
		ref, ok := t.Value.(ast.Ref)
		if !ok {
			return nil, false
		}
		if rules, ok = r.trueRule(ref); !ok {
			return nil, false
		}
	case *ast.Not:
		if e.Negated || len(t.Body) != 1 {
			return nil, false
		}
		ref, ok := existence(t.Body[0])
		if !ok || !localVars(t.Body[0], body, outer) {
			return nil, false
		}
		if rules, ok = r.setRule(ref); !ok {
			return nil, false
		}
		negated = true
	default:
		return nil, false
	}
	var out []*ast.Expr
	if negated {
		for _, rule := range rules {
			switch b := rule.Body; {
			case len(b) == 1 && b[0].Negated && movable(b[0]):
				out = append(out, b[0].Copy().Complement())
			case len(b) == 1 && !b[0].Negated && isRef(b[0]) && movable(b[0]):
				out = append(out, b[0].Copy().Complement())
			default:
				out = append(out, ast.NewExpr(&ast.Not{Body: r.fresh(b), ExplicitBody: true, Location: e.Location}))
			}
		}
	} else {
		if len(rules) == 1 {
			// Its body, spliced in with fresh variables: r holds when the
			// body has a solution, and the body it joins sees none of
			// its variables.
			b := rules[0].Body
			if len(b) == 1 && movable(b[0]) {
				out = append(out, b[0].Copy())
			} else {
				out = append(out, r.fresh(b)...)
			}
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

// setRule returns the rules defining the set at ref when it is a support
// rule whose every definition adds a constant: no arguments, no else, no
// with modifiers. Only "not" of its existence is inlined (as "not" of
// each body): evaluating the set runs every body, so an "or" stopping at
// the first that holds could miss an error the policy meets.
func (r *residual) setRule(ref ast.Ref) ([]*ast.Rule, bool) {
	if !ref.IsGround() || !ref.HasPrefix(partialRef) {
		return nil, false
	}
	rules := r.rules[ref.String()]
	for _, rule := range rules {
		if rule.Default || rule.Else != nil || len(rule.Head.Args) > 0 || rule.Head.Value != nil || rule.Head.Key == nil ||
			!ast.IsScalar(rule.Head.Key.Value) || !rule.Ref().Equal(ref) || hasWith(rule.Body) {
			return nil, false
		}
	}
	for p, rs := range r.rules {
		if p != ref.String() && rs[0].Ref().HasPrefix(ref) {
			return nil, false
		}
	}
	return rules, len(rules) > 0
}

// existence returns S when e is "S[k] = v" (either order) for variables k
// and v: it holds when the set S has an element.
func existence(e *ast.Expr) (ast.Ref, bool) {
	if e.Negated || len(e.With) > 0 || !e.IsEquality() {
		return nil, false
	}
	a, b := e.Operand(0), e.Operand(1)
	if _, ok := a.Value.(ast.Var); ok {
		a, b = b, a
	}
	ref, ok := a.Value.(ast.Ref)
	if _, isVar := b.Value.(ast.Var); !ok || !isVar || len(ref) < 2 {
		return nil, false
	}
	if _, ok := ref[len(ref)-1].Value.(ast.Var); !ok {
		return nil, false
	}
	return ref[:len(ref)-1], true
}

// localVars reports whether the variables of e occur nowhere else: not in
// the rest of body, nor in the bodies around it.
func localVars(e *ast.Expr, body ast.Body, outer ast.VarSet) bool {
	count := func(x any) map[ast.Var]int {
		n := map[ast.Var]int{}
		ast.WalkVars(x, func(v ast.Var) bool {
			n[v]++
			return false
		})
		return n
	}
	inE, inBody := count(e), count(body)
	for v, n := range inE {
		if outer.Contains(v) || inBody[v] != n {
			return false
		}
	}
	return true
}

func isRef(e *ast.Expr) bool {
	t, ok := e.Terms.(*ast.Term)
	if !ok {
		return false
	}
	_, ok = t.Value.(ast.Ref)
	return ok
}
