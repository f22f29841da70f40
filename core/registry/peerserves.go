package registry

import (
	"net/http"

	"github.com/sluice-oci/sluice/core/oci"
)

// DefaultMaxPeerServes is how many blob GETs this node serves to peers
// from its store at once unless WithMaxPeerServes says otherwise (see
// RATIONALE.md, "Why does a seeder answer 503 past N peer requests?").
const DefaultMaxPeerServes = 64

// peerBusyRetryAfter is the Retry-After of a busy answer, in seconds. The
// peer's mirror does not wait for it: it asks the next provider at once
// and tries this node last for a while.
const peerBusyRetryAfter = "1"

// WithMaxPeerServes caps the blob GETs served to peers from the store at
// once (default DefaultMaxPeerServes; 0: no cap; n < 0 keeps the default).
// Past the cap a peer is answered 503 UNAVAILABLE with Retry-After at
// once, before its blob is opened. The local client, HEAD, manifests and
// blobs the coalescer serves are never counted nor refused.
func WithMaxPeerServes(n int) Option {
	return func(s *Server) {
		switch {
		case n == 0:
			s.peerServes = nil
		case n > 0:
			s.peerServes = make(chan struct{}, n)
		}
	}
}

// takePeerServe takes a slot for a peer's blob GET from the store; false
// when every slot is busy. The release func is nil when nothing was taken.
func (c *call) takePeerServe() (release func(), ok bool) {
	if c.peer == nil || c.peerServes == nil || c.req.Kind != oci.KindBlob || c.r.Method != http.MethodGet {
		return nil, true
	}
	select {
	case c.peerServes <- struct{}{}:
		return func() { <-c.peerServes }, true
	default:
		return nil, false
	}
}

// refuseBusy answers a peer past the cap: 503 with an OCI error body and
// Retry-After, without touching the blob.
func (c *call) refuseBusy() {
	c.metrics.PeerRefused.WithLabelValues("busy").Inc()
	c.log.Debug("peer refused: every serve slot is busy", "peer", c.peer.ID, "ref", c.req.Ref.String(), "slots", cap(c.peerServes))
	c.w.Header().Set("Retry-After", peerBusyRetryAfter)
	c.fail(oci.Errorf(http.StatusServiceUnavailable, oci.CodeUnavailable,
		"this node is serving %d blobs to peers; ask another provider or the upstream", cap(c.peerServes)))
}
