package regoeng

import (
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// InputRead is a path of the input document that the policy set may read.
type InputRead struct {
	Path []string
	// PresenceOnly: every use of Path (and of every path above or below
	// it) is an expression whose outcome depends only on whether a
	// non-empty string is there, provided the value at Path is either
	// absent or a non-empty string: `P != ""`, `P == ""` (either order),
	// a bare `P`, or `object.get(input, P, "")` compared with "". The
	// caller decides whether that proviso holds for Path.
	PresenceOnly bool
}

// InputReads reports what of the input document the policy set may read:
// ok is false when it may read anything (the whole input used as a value,
// input[x], object.get(input, <non-constant path>, …), `with input …`, a
// term the analysis does not know). Otherwise the decision of every
// action is a function of the values at the paths returned (and of
// data, fixed per engine).
func (e *Engine) InputReads() ([]InputRead, bool) {
	if !e.readsOK {
		return nil, false
	}
	return slices.Clone(e.reads), true
}

// DecisionReads reports what of the input the allow decisions may read:
// the reads of the allow and deny rules of every action package and of
// every rule they depend on, leaving out what only reasons read (such as
// the reference a refusal's message names). ok is false when that is not
// known to decide the whole result of an allowing decision: a rule it
// reaches may read anything, or an action has reasons that may hold while
// allow does (every reasons rule must have the literal `not allow`).
//
// Decisions that allow are then a function of these reads; decisions
// that deny, of InputReads (their reasons).
func (e *Engine) DecisionReads() ([]InputRead, bool) {
	if !e.decisionReadsOK {
		return nil, false
	}
	return slices.Clone(e.decisionReads), true
}

// decisionReads computes DecisionReads from the analysis of the compiled
// set.
func decisionReads(a *inputAnalysis, c *ast.Compiler, actions []string) ([]InputRead, bool) {
	var roots []*ast.Rule
	for _, action := range actions {
		if !reasonsNeedDeny(c, action) {
			return nil, false
		}
		roots = append(roots, c.GetRulesExact(ruleRef(action, "allow"))...)
		roots = append(roots, c.GetRulesExact(ruleRef(action, "deny"))...)
	}
	seen := map[*ast.Rule]bool{}
	var reached []*ast.Rule
	var visit func(r *ast.Rule)
	visit = func(r *ast.Rule) {
		if seen[r] {
			return
		}
		seen[r] = true
		reached = append(reached, r)
		for d := range c.Graph.Dependencies(r) {
			dr, ok := d.(*ast.Rule)
			if !ok {
				continue
			}
			visit(dr)
		}
	}
	for _, r := range roots {
		for e := r; e != nil; e = e.Else {
			visit(e)
		}
	}
	return a.readsOf(reached)
}

// analyzeStage runs the analysis inside the compiler once imports and
// refs are resolved and template strings are rewritten, but before the
// compiler hoists refs into generated local variables (RewriteExprTerms,
// RewriteDynamicTerms), after which `input.a != ""` reads as
// `__local1__ = input.a; neq(__local1__, "")`. The stages that follow
// rewrite without changing what a rule reads. User variables are already
// renamed here; a variable bound to the whole input is a use of the whole
// input (no projection).
const analyzeAfter = ast.StageRewriteTemplateStrings

func analyzeStage(out *inputAnalysis) ast.CompilerStageDefinition {
	return ast.CompilerStageDefinition{
		Name:       "SluiceInputReads",
		MetricName: "compile_stage_sluice_input_reads",
		Stage: func(c *ast.Compiler) *ast.Error {
			*out = analyzeModules(c.Modules, c.GetRules)
			return nil
		},
	}
}

type inputAnalysis struct {
	done  bool // the stage ran (a renamed OPA stage must not mean "reads nothing")
	rules func(ast.Ref) []*ast.Rule
	readSet
	byRule map[*ast.Rule]*readSet // each rule's reads (an else shares its rule's)
}

// readSet is what one rule reads of the input.
type readSet struct {
	any      bool                // the whole input may be read
	value    map[string][]string // joined path → path
	presence map[string][]string
}

// analyzeModules analyzes mods; rules returns the rules at or below a
// data reference (ast.Compiler.GetRules).
func analyzeModules(mods map[string]*ast.Module, rules func(ast.Ref) []*ast.Rule) inputAnalysis {
	a := inputAnalysis{done: true, rules: rules, byRule: map[*ast.Rule]*readSet{}}
	for _, m := range mods {
		for _, r := range m.Rules {
			a.readSet = readSet{value: map[string][]string{}, presence: map[string][]string{}}
			a.walk(r)
			rs := a.readSet
			for e := r; e != nil; e = e.Else {
				a.byRule[e] = &rs
			}
		}
	}
	a.readSet = readSet{}
	return a
}

// reads merges the reads of every rule.
func (a *inputAnalysis) reads() ([]InputRead, bool) {
	if !a.done {
		return nil, false
	}
	sets := make([]*readSet, 0, len(a.byRule))
	for _, rs := range a.byRule {
		sets = append(sets, rs)
	}
	return mergeReads(sets)
}

// readsOf merges the reads of the rules given. ok is false when one of
// them was not analyzed (a rule a later compiler stage added).
func (a *inputAnalysis) readsOf(rules []*ast.Rule) ([]InputRead, bool) {
	if !a.done {
		return nil, false
	}
	sets := make([]*readSet, 0, len(rules))
	for _, r := range rules {
		rs, ok := a.byRule[r]
		if !ok {
			return nil, false
		}
		sets = append(sets, rs)
	}
	return mergeReads(sets)
}

// mergeReads merges read sets, resolves presence reads that overlap any
// other read into value reads and returns them sorted.
func mergeReads(sets []*readSet) ([]InputRead, bool) {
	value, presence := map[string][]string{}, map[string][]string{}
	for _, rs := range sets {
		if rs.any {
			return nil, false
		}
		maps.Copy(value, rs.value)
		maps.Copy(presence, rs.presence)
	}
	var out []InputRead
	for _, p := range value {
		out = append(out, InputRead{Path: p})
	}
	for k, p := range presence {
		only := true
		for _, q := range value {
			if overlaps(p, q) {
				only = false
			}
		}
		for k2, q := range presence {
			if k2 != k && overlaps(p, q) {
				only = false
			}
		}
		if _, dup := value[k]; dup {
			continue // already a value read
		}
		out = append(out, InputRead{Path: p, PresenceOnly: only})
	}
	slices.SortFunc(out, func(x, y InputRead) int { return slices.Compare(x.Path, y.Path) })
	return out, true
}

// overlaps reports whether one path is a prefix of the other.
func overlaps(p, q []string) bool {
	n := min(len(p), len(q))
	return slices.Equal(p[:n], q[:n])
}

func pathKey(p []string) string { return strings.Join(p, "\x00") }

func (a *inputAnalysis) addValue(p []string) {
	if len(p) == 0 {
		a.any = true
		return
	}
	a.value[pathKey(p)] = slices.Clone(p)
}

func (a *inputAnalysis) walk(x any) {
	if a.any {
		return
	}
	ast.NewGenericVisitor(a.visit).Walk(x)
}

var (
	inputVar  = ast.InputRootDocument.Value.(ast.Var)
	objectGet = ast.Ref{ast.VarTerm("object"), ast.StringTerm("get")}
	equalRef  = ast.Equal.Ref()
	neqRef    = ast.NotEqual.Ref()
)

// visit handles one node; true stops the visitor from descending (the
// node's children were handled here).
func (a *inputAnalysis) visit(x any) bool {
	if a.any {
		return true
	}
	switch x := x.(type) {
	case *ast.Head:
		// ast.Walk leaves out the rule's reference (p[input.x] := …).
		if x.Reference != nil {
			for _, t := range x.Reference[1:] {
				a.walk(t)
			}
		}
		for _, t := range x.Args {
			a.walk(t)
		}
		if x.Key != nil {
			a.walk(x.Key)
		}
		if x.Value != nil {
			a.walk(x.Value)
		}
		return true
	case *ast.With:
		// `with input…` changes the input; `with object.get as f`, `with
		// neq as g` or `with data.lib.f as g` swap code the analysis
		// reasoned about (object.get reads one path, != "" tests only
		// presence) for code that may see anything.
		if isInputRooted(x.Target) || a.replacesFunction(x.Target) {
			a.any = true
			return true
		}
		a.walk(x.Value)
		return true
	case *ast.Expr:
		if p, ok := presenceTest(x); ok {
			a.presence[pathKey(p)] = p
			return true
		}
		if ts, ok := x.Terms.([]*ast.Term); ok && len(ts) > 0 {
			if a.objectGet(ts[0], ts[1:]) {
				for _, w := range x.With {
					a.walk(w)
				}
				return true
			}
		}
		return false
	case ast.Ref:
		if len(x) > 0 && x[0].Value.Compare(inputVar) == 0 {
			a.ref(x)
			return true
		}
		return false
	case *ast.Term:
		switch v := x.Value.(type) {
		case ast.Var:
			if v.Equal(inputVar) {
				a.any = true // the whole input as a value
				return true
			}
		case ast.Ref:
			if v[0].Value.Compare(inputVar) == 0 {
				a.ref(v)
				return true
			}
		case ast.Call:
			if len(v) > 0 && a.objectGet(v[0], v[1:]) {
				return true
			}
		case ast.Null, ast.Boolean, ast.Number, ast.String, *ast.Array, ast.Object, ast.Set,
			*ast.ArrayComprehension, *ast.ObjectComprehension, *ast.SetComprehension:
		default:
			a.any = true // a term this analysis does not know
			return true
		}
	}
	return false
}

// ref records a ref rooted at input: the longest prefix of string keys is
// read (a later element that is not a string, such as the variable of
// input.mirrors[i], reads somewhere below it, so the whole subtree goes
// into the key). input[x] reads the whole input.
func (a *inputAnalysis) ref(r ast.Ref) {
	p := make([]string, 0, len(r)-1)
	for i, t := range r[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			for _, rest := range r[1+i:] {
				a.walk(rest) // input.a[input.b]
			}
			break
		}
		p = append(p, string(s))
	}
	a.addValue(p)
}

// objectGet handles object.get(R, K, D[, out]) with R a ref rooted at
// input: it reads R+K when K is a string or an array of strings, R when K
// is anything else. It reports false when op is not object.get or R is
// not such a ref, so that the generic walk handles the call.
func (a *inputAnalysis) objectGet(op *ast.Term, args []*ast.Term) bool {
	r, ok := op.Value.(ast.Ref)
	if !ok || !r.Equal(objectGet) || len(args) < 3 {
		return false
	}
	base, ok := stringPath(args[0])
	if !ok {
		return false
	}
	if k, ok := constKey(args[1]); ok {
		a.addValue(append(base, k...))
	} else {
		a.walk(args[1])
		a.addValue(base)
	}
	for _, t := range args[2:] {
		a.walk(t)
	}
	return true
}

// stringPath returns the path of a ref rooted at input whose elements are
// all strings (input itself: the empty path).
func stringPath(t *ast.Term) ([]string, bool) {
	var r ast.Ref
	switch v := t.Value.(type) {
	case ast.Var:
		if !v.Equal(inputVar) {
			return nil, false
		}
		return []string{}, true
	case ast.Ref:
		r = v
	default:
		return nil, false
	}
	if r[0].Value.Compare(inputVar) != 0 {
		return nil, false
	}
	p := make([]string, 0, len(r)-1)
	for _, e := range r[1:] {
		s, ok := e.Value.(ast.String)
		if !ok {
			return nil, false
		}
		p = append(p, string(s))
	}
	return p, true
}

// constKey is the path of an object.get key: a string, or an array of
// strings.
func constKey(t *ast.Term) ([]string, bool) {
	switch v := t.Value.(type) {
	case ast.String:
		return []string{string(v)}, true
	case *ast.Array:
		p := make([]string, 0, v.Len())
		for i := range v.Len() {
			s, ok := v.Elem(i).Value.(ast.String)
			if !ok {
				return nil, false
			}
			p = append(p, string(s))
		}
		return p, true
	}
	return nil, false
}

// replacesFunction reports whether a with target names a builtin or a
// function: anything not rooted at data (builtins are plain names such as
// neq or refs such as object.get), or a data reference at or above a rule
// that takes arguments.
func (a *inputAnalysis) replacesFunction(t *ast.Term) bool {
	r, ok := t.Value.(ast.Ref)
	if !ok || len(r) == 0 || r[0].Value.Compare(ast.DefaultRootDocument.Value) != 0 {
		return true
	}
	if a.rules == nil {
		return true
	}
	for _, rule := range a.rules(r) {
		if len(rule.Head.Args) > 0 {
			return true
		}
	}
	return false
}

func isInputRooted(t *ast.Term) bool {
	switch v := t.Value.(type) {
	case ast.Var:
		return v.Equal(inputVar)
	case ast.Ref:
		return len(v) > 0 && v[0].Value.Compare(inputVar) == 0
	}
	return false
}

// presenceTest matches an expression whose outcome depends only on
// whether a non-empty string is at a fixed input path P (given the value
// there is absent or a non-empty string): `P != ""`, `P == ""`, `"" != P`,
// `"" == P`, `object.get(R, K, "")` compared with "" in either order, or
// a bare `P`. Negation keeps that property; a with modifier does not
// qualify (the caller walks the expression instead).
func presenceTest(e *ast.Expr) ([]string, bool) {
	if len(e.With) > 0 {
		return nil, false
	}
	switch ts := e.Terms.(type) {
	case *ast.Term:
		if _, ok := ts.Value.(ast.Ref); !ok {
			return nil, false
		}
		p, ok := stringPath(ts)
		return p, ok && len(p) > 0
	case []*ast.Term:
		if len(ts) != 3 {
			return nil, false
		}
		op, ok := ts[0].Value.(ast.Ref)
		if !ok || !(op.Equal(equalRef) || op.Equal(neqRef)) {
			return nil, false
		}
		x, y := ts[1], ts[2]
		if isEmptyString(x) {
			x, y = y, x
		}
		if !isEmptyString(y) {
			return nil, false
		}
		if _, ok := x.Value.(ast.Ref); ok {
			p, ok := stringPath(x)
			return p, ok && len(p) > 0
		}
		if c, ok := x.Value.(ast.Call); ok && len(c) == 4 {
			r, ok := c[0].Value.(ast.Ref)
			if !ok || !r.Equal(objectGet) || !isEmptyString(c[3]) {
				return nil, false
			}
			base, ok := stringPath(c[1])
			if !ok {
				return nil, false
			}
			k, ok := constKey(c[2])
			if !ok {
				return nil, false
			}
			p := append(base, k...)
			return p, len(p) > 0
		}
	}
	return nil, false
}

func isEmptyString(t *ast.Term) bool {
	s, ok := t.Value.(ast.String)
	return ok && s == ""
}
