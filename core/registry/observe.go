package registry

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/policy"
)

// Observer is told about every answered distribution request, for a status
// page or an audit trail. It is optional (WithObserver); Request is called
// on the request's goroutine after the response (also after an aborted
// one), so it must be quick and safe for concurrent use.
type Observer interface {
	Request(ev RequestEvent)
}

// RequestEvent is one answered request.
type RequestEvent struct {
	Start    time.Time
	Duration time.Duration
	Method   string
	Kind     string // manifest or blob
	Ref      oci.Reference
	// Peer is the requesting peer; nil for the local client.
	Peer *policy.Peer
	// Source is where the answer came from: local, peer or none.
	Source string
	// Status is the HTTP status written; 0 when the response was aborted
	// after its body had started.
	Status int
	// Sent is the body bytes the server wrote from local content or a
	// fetched manifest; a blob streamed from peers counts in From instead.
	Sent int64
	// From are the peers the content came from, in the order they served
	// (a blob resumed on another peer has several), with the bytes each
	// sent.
	From []PeerBytes
	// Decisions are the policy decisions asked for the request, in order.
	Decisions []DecisionEvent
}

// PeerBytes is what one peer sent for a request.
type PeerBytes struct {
	Peer  string
	Bytes int64
}

// DecisionEvent is one policy decision of a request.
type DecisionEvent struct {
	Action  policy.Action
	Allow   bool
	Reasons []string
	Err     string // the engine error, when it could not decide
}

// WithObserver sets an observer of answered requests.
func WithObserver(o Observer) Option { return func(s *Server) { s.observer = o } }

// trace collects what the layers below the server learn about one request
// (which peer served, how many bytes); it rides in the request context.
type trace struct {
	mu   sync.Mutex
	from []PeerBytes
}

type traceKey struct{}

// NoteFetched records that peer sent n bytes (n may be 0: the peer is
// serving, bytes follow) for the request of ctx. Mirrors call it; without
// an observer it does nothing.
func NoteFetched(ctx context.Context, peer string, n int64) {
	t, _ := ctx.Value(traceKey{}).(*trace)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if k := len(t.from); k > 0 && t.from[k-1].Peer == peer {
		t.from[k-1].Bytes += n
		return
	}
	t.from = append(t.from, PeerBytes{Peer: peer, Bytes: n})
}

func (t *trace) peers() []PeerBytes {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.from)
}

// observe starts tracing c when an observer is set; the returned func
// reports the request (deferred by ServeHTTP, so an aborted response is
// reported too).
func (c *call) observe(start time.Time) func() {
	if c.observer == nil {
		return func() {}
	}
	t := &trace{}
	c.r = c.r.WithContext(context.WithValue(c.r.Context(), traceKey{}, t))
	return func() {
		source := c.source
		if source == "" {
			source = "none"
		}
		c.observer.Request(RequestEvent{
			Start: start, Duration: time.Since(start), Method: c.r.Method, Kind: c.req.Kind.String(),
			Ref: c.req.Ref, Peer: c.peer, Source: source, Status: c.status, Sent: c.sent,
			From: t.peers(), Decisions: c.decisions,
		})
	}
}

// noteDecision keeps a decision for the observer.
func (c *call) noteDecision(a policy.Action, d policy.Decision, err error) {
	if c.observer == nil {
		return
	}
	ev := DecisionEvent{Action: a, Allow: d.Allow && err == nil, Reasons: d.Reasons}
	if err != nil {
		ev.Err = err.Error()
	}
	c.decisions = append(c.decisions, ev)
}

// callTrace is what a call keeps for its observer.
type callTrace struct {
	sent      int64
	decisions []DecisionEvent
}
