package registry

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
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
		return fmt.Errorf("mirror: %w", err)
	}
	NoteFetched(ctx, m.Peer, int64(len(m.Bytes)))
	d := c.req.Ref.Digest
	if d == "" {
		d = digest.FromBytes(m.Bytes)
	}
	c.writeManifest(m.Bytes, m.MediaType, d)
	return nil
}
