package policy

import (
	"context"
	"time"
)

// DecisionLogger receives every decision the Set makes (cache hits too),
// for an audit log such as OPA's decision logs (package
// policy/opaplugins). It is called on the decision's goroutine, after the
// decision is made: an implementation must be quick (copy what it needs
// and hand it off) and must not keep rec.Input's pointers past the call.
// Without WithDecisionLogger the Set calls nothing and allocates nothing
// for it.
type DecisionLogger interface {
	LogDecision(ctx context.Context, rec DecisionRecord)
}

// DecisionRecord is one decision as the Set made it.
type DecisionRecord struct {
	Action   Action
	Input    Input // as the sources saw it: action, mirrors and node filled in
	Decision Decision
	// Revision is the policy revision that decided (Set.Revision).
	Revision string
	// Cached: answered from the decision cache.
	Cached bool
	// Start is when the decision began; Duration how long it took.
	Start    time.Time
	Duration time.Duration
}

// WithDecisionLogger makes the Set report every decision to l, in addition
// to the human decision log line of WithLogger.
func WithDecisionLogger(l DecisionLogger) Option { return func(o *options) { o.decisionLog = l } }

// emitDecision hands one decision to the decision logger. It is a method
// of its own, called only when a logger is set, so that the record never
// costs the hot path anything when decision logs are off.
func (s *Set) emitDecision(ctx context.Context, rev *revision, in *Input, d Decision, cached bool, start time.Time) {
	s.o.decisionLog.LogDecision(ctx, DecisionRecord{
		Action: in.Action, Input: *in, Decision: d, Revision: rev.id,
		Cached: cached, Start: start, Duration: time.Since(start),
	})
}
