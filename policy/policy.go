// Package policy is the decision facade of sluice: every action that lets
// bytes cross a node boundary (advertise, serve, resolve, fetch) is answered by an
// Engine. Several sources (the Rego set, each Wasm module) are combined so
// that every source must allow; a deny from any wins.
package policy

import (
	"context"
	"fmt"
)

// Action is a decision point.
type Action string

// The decision points fixed in DESIGN.md.
const (
	ActionAdvertise Action = "advertise"
	ActionServe     Action = "serve"
	ActionResolve   Action = "resolve"
	// ActionFetch: may the node responsible for a key fetch it from the
	// upstream on behalf of a peer (a coalesced first pull, issue 11)?
	ActionFetch Action = "fetch"
)

// Actions lists every decision point, in a stable order.
var Actions = []Action{ActionAdvertise, ActionServe, ActionResolve, ActionFetch}

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	switch a {
	case ActionAdvertise, ActionServe, ActionResolve, ActionFetch:
		return true
	}
	return false
}

// ParseAction returns the action named s or an error naming it.
func ParseAction(s string) (Action, error) {
	a := Action(s)
	if !a.Valid() {
		return "", fmt.Errorf("unknown policy action %q (want advertise, serve, resolve or fetch)", s)
	}
	return a, nil
}

// Decision is the output of a policy: {"allow": bool, "reasons": [string]}.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons,omitempty"`
}

// Engine answers a decision for an action. Implementations are safe for
// concurrent use. An error means the engine could not decide (bad policy,
// trap, timeout); callers treat it as a deny unless configured fail-open.
type Engine interface {
	Decide(ctx context.Context, action Action, in Input) (Decision, error)
}

// VolatileEngine is an Engine that tells, per decision, whether the
// answer depended on more than its input (a Wasm guest read a clock or a
// random source): the Set caches no such decision. An Engine without it
// is taken to be a function of its input.
type VolatileEngine interface {
	Engine
	DecideVolatile(ctx context.Context, action Action, in Input) (d Decision, volatile bool, err error)
}
