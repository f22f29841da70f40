package regoeng

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestFlatCache_Frames(t *testing.T) {
	t.Parallel()
	a, b := ast.MustParseRef("data.x.a"), ast.MustParseRef("data.x.b")
	c := getFlatCache()
	defer c.put()
	c.Put(a, ast.IntNumberTerm(1))
	c.Put(b, nil)
	if v, undef := c.Get(a); v == nil || undef || !v.Equal(ast.IntNumberTerm(1)) {
		t.Errorf("Get(a) = %v, %v", v, undef)
	}
	if v, undef := c.Get(b); v != nil || !undef {
		t.Errorf("Get(b) = %v, %v; want undefined", v, undef)
	}
	if v, undef := c.Get(ast.MustParseRef("data.x")); v != nil || undef {
		t.Errorf("a prefix is not cached: %v, %v", v, undef)
	}
	c.Push() // with: a frame of its own, empty
	if v, _ := c.Get(a); v != nil {
		t.Errorf("new frame sees %v", v)
	}
	c.Put(a, ast.IntNumberTerm(2))
	if keys := c.Keys(); len(keys) != 1 || !keys[0].Equal(a) {
		t.Errorf("Keys() = %v", keys)
	}
	c.Pop()
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(1)) {
		t.Errorf("after Pop: %v, want 1", v)
	}
}

// TestEngine_HotQueryOtherAction: the hot query is specialized for its
// action; an input naming another action is decided by the full query.
func TestEngine_HotQueryOtherAction(t *testing.T) {
	t.Parallel()
	e := newEngine(t, "package sluice.resolve\nallow if input.action == \"resolve\"\nreasons contains \"no\" if not allow")
	if e.queries["resolve"].hotAction != "resolve" {
		t.Fatalf("hot query not specialized: %q", e.queries["resolve"].hotAction)
	}
	for _, tc := range []struct {
		action string
		allow  bool
	}{{"resolve", true}, {"serve", false}} {
		in := ast.NewObject([2]*ast.Term{ast.StringTerm("action"), ast.StringTerm(tc.action)})
		r, err := e.Eval(t.Context(), "resolve", in)
		if err != nil || r.Allow != tc.allow {
			t.Errorf("input.action %s: %+v, %v; want allow %v", tc.action, r, err, tc.allow)
		}
	}
}
