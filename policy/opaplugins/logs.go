package opaplugins

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/google/uuid"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/server"

	"github.com/sluice-oci/sluice/policy"
)

var _ policy.DecisionLogger = (*Runtime)(nil)

// event is a decision waiting for the decision-log plugin: the input is
// already encoded, so nothing of the caller's is kept.
type event struct {
	id       string
	action   policy.Action
	input    []byte
	allow    bool
	reasons  []string
	revision string
	cached   bool
	start    time.Time
	duration time.Duration
}

// LogDecision queues one decision for OPA's decision-log plugin
// (policy.DecisionLogger). The input is encoded here; masking, dropping,
// buffering and upload happen on the plugin's goroutine, never on the
// decision's. A full queue drops the event and counts it.
func (r *Runtime) LogDecision(_ context.Context, rec policy.DecisionRecord) {
	in, err := json.Marshal(rec.Input)
	if err != nil {
		r.m.logDropped.Inc()
		return
	}
	ev := event{
		id: uuid.NewString(), action: rec.Action, input: in, allow: rec.Decision.Allow,
		reasons: slices.Clone(rec.Decision.Reasons), revision: rec.Revision, cached: rec.Cached,
		start: rec.Start, duration: rec.Duration,
	}
	r.evMu.RLock()
	defer r.evMu.RUnlock()
	if r.closed {
		return
	}
	select {
	case r.events <- ev:
	default:
		r.m.logDropped.Inc()
	}
}

func (r *Runtime) logLoop(ctx context.Context) {
	defer close(r.done)
	for ev := range r.events {
		info, err := r.info(ev)
		if err == nil {
			err = r.logs.Log(ctx, info)
		}
		if err != nil {
			r.m.logDropped.Inc()
			r.log.WarnContext(ctx, "decision log event dropped", "decision_id", ev.id, "error", err)
		}
	}
}

// info is the decision as OPA's server records one: path
// "sluice/<action>", the input document, the result {"allow", "reasons"}
// (the node's decision, every source combined), the revisions of the
// downloaded bundles, and sluice's revision and cache use under custom.
func (r *Runtime) info(ev event) (*server.Info, error) {
	var input any
	if err := json.Unmarshal(ev.input, &input); err != nil {
		return nil, err
	}
	reasons := make([]any, len(ev.reasons))
	for i, s := range ev.reasons {
		reasons[i] = s
	}
	var result any = map[string]any{"allow": ev.allow, "reasons": reasons}
	m := opametrics.New()
	m.Counter("sluice_decision_ns").Add(uint64(ev.duration.Nanoseconds()))
	cached := uint64(0)
	if ev.cached {
		cached = 1
	}
	m.Counter("sluice_cache_hit").Add(cached)
	info := &server.Info{
		DecisionID: ev.id,
		Path:       "sluice/" + string(ev.action),
		Input:      &input,
		Results:    &result,
		Timestamp:  ev.start.UTC(),
		Metrics:    m,
		Custom:     map[string]any{"sluice_revision": ev.revision, "cached": ev.cached},
	}
	if revs := r.st.revisions.Load(); revs != nil {
		info.Bundles = *revs
	}
	return info, nil
}
