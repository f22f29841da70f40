package policy

import (
	"context"
	"errors"
	"strings"

	"github.com/sluice-oci/sluice/policy/internal/regoeng"
)

// regoSource is the compiled Rego set as an Engine.
type regoSource struct {
	eng *regoeng.Engine
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
	return &regoSource{eng: eng}, nil
}

func (r *regoSource) EngineName() string { return EngineRego }

func (r *regoSource) Decide(ctx context.Context, action Action, in Input) (Decision, error) {
	if in.Action == "" {
		in.Action = action
	}
	res, err := r.eng.Eval(ctx, string(action), inputValue(&in))
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
