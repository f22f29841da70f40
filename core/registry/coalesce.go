package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// Coalescer answers peers for content the store lacks during a rollout
// (issue 11, core/coalesce): what this node is fetching or fetched from the
// upstream on behalf of peers, and, for a request carrying
// oci.CoalesceHeader, a fetch the fetch policy allows.
type Coalescer interface {
	// ServePeer writes the response; store.ErrNotFound before anything
	// was written means it has nothing for the request, ErrAborted that
	// the body started and could not be completed.
	ServePeer(ctx context.Context, w http.ResponseWriter, r *http.Request, req oci.Request, peer *policy.Peer) error
}

// WithCoalescer lets peers be answered by c for content the store lacks.
func WithCoalescer(c Coalescer) Option { return func(s *Server) { s.coalescer = c } }

// serveCoalesced answers a peer from the coalescer after the serve policy;
// false means it had nothing and nothing was written.
func (c *call) serveCoalesced(ctx context.Context) bool {
	if c.coalescer == nil {
		return false
	}
	if !c.decide(ctx, policy.ActionServe, c.input(policy.ActionServe, ocispec.Descriptor{})) {
		c.fail(oci.Errorf(http.StatusForbidden, oci.CodeDenied, "policy denies serving %s", c.req.Ref))
		return true
	}
	err := c.coalescer.ServePeer(ctx, c.w, c.r, c.req, c.peer)
	switch {
	case err == nil:
		c.source = "upstream"
		c.status = http.StatusOK
	case errors.Is(err, store.ErrNotFound):
		c.log.Debug("coalesce: not served", "ref", c.req.Ref.String(), "err", err)
		return false
	case errors.Is(err, ErrAborted):
		c.log.Warn("coalesce: response aborted", "ref", c.req.Ref.String(), "err", err)
		panic(http.ErrAbortHandler)
	default:
		c.fail(fmt.Errorf("coalesce: %w", err))
	}
	return true
}
