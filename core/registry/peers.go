package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// serveFromPeers answers a local client from peers through the mirror.
func (c *call) serveFromPeers(ctx context.Context) error {
	if c.req.Kind == oci.KindBlob {
		err := c.mirror.ServeBlob(ctx, c.w, c.r, c.req.Ref)
		if err == nil {
			c.status = 200
		}
		return err
	}
	m, err := c.mirror.Manifest(ctx, c.req.Ref)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			// Whatever went wrong with peers, containerd must move on to
			// the next host at once: a 404 does that, a 5xx may not.
			c.log.Warn("manifest from peers failed", "ref", c.req.Ref.String(), "err", err)
		}
		return fmt.Errorf("mirror: %w", store.ErrNotFound)
	}
	d := c.req.Ref.Digest
	if d == "" {
		d = digest.FromBytes(m.Bytes)
	}
	c.writeManifest(m.Bytes, m.MediaType, d)
	return nil
}
