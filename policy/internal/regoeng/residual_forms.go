package regoeng

import (
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The residual's expression forms: normalising what shallow partial
// evaluation writes, fresh variables, and what may move between bodies.

// normalize rewrites the forms shallow partial evaluation writes for a
// reference used as an expression: "t = w; w" (w a variable used nowhere
// else) becomes "t", and "not { t }" becomes "not t" (t a reference
// without variables: it is then evaluated inside the negation either
// way).
func normalize(body ast.Body) ast.Body {
	out := make(ast.Body, 0, len(body))
	for i := 0; i < len(body); i++ {
		e := body[i]
		if n, ok := e.Terms.(*ast.Not); ok && !e.Negated && len(e.With) == 0 {
			n.Body = normalize(n.Body)
			if len(n.Body) == 1 && !n.Body[0].Negated && isRef(n.Body[0]) && movable(n.Body[0]) {
				x := n.Body[0].Copy().Complement()
				x.Location = e.Location
				out = append(out, x)
				continue
			}
		}
		if i+1 < len(body) {
			if t, ok := definedPair(body, i); ok {
				x := ast.NewExpr(t)
				x.Location = e.Location
				out = append(out, x)
				i++
				continue
			}
		}
		out = append(out, e)
	}
	for j, x := range out {
		x.Index = j
	}
	return out
}

// definedPair returns t when body[i] is "t = w" (either order) and
// body[i+1] is "w", for a reference t and a variable w that occurs
// nowhere else in body: together they hold when t is defined and not
// false, as "t" does.
func definedPair(body ast.Body, i int) (*ast.Term, bool) {
	e, next := body[i], body[i+1]
	if e.Negated || next.Negated || len(e.With) > 0 || len(next.With) > 0 || !e.IsEquality() {
		return nil, false
	}
	wt, ok := next.Terms.(*ast.Term)
	if !ok {
		return nil, false
	}
	w, ok := wt.Value.(ast.Var)
	if !ok {
		return nil, false
	}
	t, o := e.Operand(0), e.Operand(1)
	if o.Value.Compare(w) != 0 {
		t, o = o, t
	}
	if o.Value.Compare(w) != 0 {
		return nil, false
	}
	if _, ok := t.Value.(ast.Ref); !ok {
		return nil, false
	}
	n := 0
	ast.WalkVars(body, func(v ast.Var) bool {
		if v.Equal(w) {
			n++
		}
		return false
	})
	return t, n == 2
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
