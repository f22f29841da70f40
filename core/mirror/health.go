package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/core/routing"
)

// health remembers providers that failed recently: a connection error, a
// 5xx, a response header slower than slowAfter, a transfer that broke or
// stalled mid-blob. Lookups keep returning the provider records of a dead
// node until they expire (hours on the DHT); a node remembered here is
// handed out after every other provider, and only within the probe budget
// (peerSet). It is not excluded: when it is all there is, it is still
// tried, and an answer in time clears it. The map is bounded: when full,
// expired entries go first, then the one closest to expiry.
type health struct {
	expiring
	slowAfter time.Duration
	marked    prometheus.Counter // providers marked unhealthy (wireMetrics); nil counts nothing
}

// Defaults of health (WithPeerHealth, WithSlowPeer).
const (
	defaultHealthTTL  = time.Minute
	defaultHealthMax  = 4096
	defaultSlowAnswer = time.Second
)

func newHealth(ttl time.Duration, max int) *health {
	return &health{expiring: newExpiring(ttl, max), slowAfter: defaultSlowAnswer}
}

// fail remembers id as unhealthy for the TTL (from now).
func (h *health) fail(id string) {
	if h.add(id) && h.marked != nil {
		h.marked.Inc()
	}
}

// ok forgets id: it answered in time.
func (h *health) ok(id string) { h.forget(id) }

// bad reports whether id failed within the TTL.
func (h *health) bad(id string) bool { return h.has(id) }

// errProbeExpired ends a request to an unhealthy peer that did not answer
// within the probe budget.
var errProbeExpired = errors.New("unhealthy peer did not answer within the resolve budget")

// noteAnswer records how a peer answered a request it was sent at start:
// parent is the fetch's context, rctx the request's own (cancelled when
// another peer won the hedge). A loser is only blamed when it was slow; a
// client that went away blames nobody; 4xx (a stale record, a policy
// deny) is an answer from a healthy node.
func (h *health) noteAnswer(parent, rctx context.Context, p routing.Peer, took time.Duration, err error) {
	switch {
	case parent.Err() != nil:
	case err == nil:
		if took > h.slowAfter {
			h.fail(p.ID)
		} else {
			h.ok(p.ID)
		}
	case errors.Is(err, errProbeExpired):
		h.fail(p.ID)
	case errors.Is(err, errSizeDisagrees): // an answer in time; whose size is wrong is the digest's call
	case rctx.Err() != nil: // cancelled: another peer answered first
		if took > h.slowAfter {
			h.fail(p.ID)
		}
	default:
		var se *statusError
		if !errors.As(err, &se) || se.code >= 500 {
			h.fail(p.ID)
		}
	}
}

// errSizeDisagrees is a provider's answer to a range of a blob whose size
// it gives differently from the provider that answered first. One of the
// two lies; only the digest tells which, so neither is held unhealthy for
// it (a liar answering first would otherwise get every honest provider
// tried last, for every key, for the health TTL).
var errSizeDisagrees = errors.New("provider disagrees on the blob's size")

// statusError is a peer answer with an unexpected status.
type statusError struct {
	addr string
	code int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%v: %s answered %d", errBadPeer, e.addr, e.code)
}

func (e *statusError) Unwrap() error { return errBadPeer }
