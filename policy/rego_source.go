package policy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluice-oci/sluice/policy/internal/regoeng"
)

// regoSource is the compiled Rego set as an Engine.
type regoSource struct {
	eng     *regoeng.Engine
	keys    *inputKeys
	keep    fieldMask // the input fields the set reads: the rest is not built
	mirrors atomic.Pointer[mirrorsCache]
}

// mirrorsCache holds the term of the last mirrors list seen: most
// decisions carry the same list (the Set's, from SetMirrors).
type mirrorsCache struct {
	list []string
	term *ast.Term
}

var _ Engine = (*regoSource)(nil)

func newRegoSource(ctx context.Context, snap *snapshot) (*regoSource, error) {
	actions := make([]string, len(Actions))
	for i, a := range Actions {
		actions[i] = string(a)
	}
	eng, err := regoeng.New(ctx, snap.modules, snap.data, actions)
	if err != nil {
		return nil, compileError(err)
	}
	return &regoSource{eng: eng, keys: newInputKeys(), keep: readMask(eng.InputReads())}, nil
}

func (r *regoSource) EngineName() string { return EngineRego }

func (r *regoSource) Decide(ctx context.Context, action Action, in Input) (Decision, error) {
	if in.Action == "" {
		in.Action = action
	}
	res, err := r.eng.Eval(ctx, string(action), r.keys.inputValue(&in, r.mirrorsTerm(in.Mirrors), r.keep))
	if err != nil {
		switch {
		case errors.Is(err, regoeng.ErrUndefined):
			return Decision{}, &Error{Code: CodeUndefined, Err: err}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
			strings.Contains(err.Error(), "eval_cancel_error"):
			return Decision{}, &Error{Code: CodeTimeout, Err: err}
		}
		return Decision{}, &Error{Code: CodeEval, Err: err}
	}
	return Decision{Allow: res.Allow, Reasons: res.Reasons}, nil
}

func (r *regoSource) mirrorsTerm(m []string) *ast.Term {
	if m == nil {
		return nil
	}
	if c := r.mirrors.Load(); c != nil && slices.Equal(c.list, m) {
		return c.term
	}
	t := mirrorsTerm(m)
	r.mirrors.Store(&mirrorsCache{list: slices.Clone(m), term: t})
	return t
}

// readMask is the set of input fields the reads cover, every field when
// the set may read anything.
func readMask(reads []regoeng.InputRead, ok bool) fieldMask {
	if !ok {
		return fAll
	}
	m := fAction
	for _, r := range reads {
		f, _, ok := fieldsOf(r.Path)
		if !ok {
			return fAll
		}
		m |= f
	}
	return m
}
