package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
)

// blobByDigest opens a blob of unknown size with containerd's
// FetchByDigest: a HEAD then a GET on the blobs path of each endpoint in
// order. Why not Resolve, as for a manifest? containerd's Resolve of a
// digest asks the manifests path first, and a registry that answers a
// blob there (distribution does) gets a blob over 4 MiB rejected as an
// oversized manifest, with no fallback to the blobs path.
func (c *Client) blobByDigest(ctx context.Context, s *session, ref oci.Reference, dgst digest.Digest) (*Blob, error) {
	f, err := s.resolver(0, len(s.hosts)).Fetcher(ctx, ref.String())
	if err != nil {
		return nil, classify("fetch", ref, err)
	}
	fd, ok := f.(remotes.FetcherByDigest)
	if !ok {
		return nil, fmt.Errorf("upstream fetch %s: containerd fetcher cannot fetch by digest", ref)
	}
	rc, desc, err := fd.FetchByDigest(ctx, dgst)
	if err != nil {
		// containerd reports a HEAD's status as plain text: ask as a
		// resolve does, which classifies a missing digest (store.ErrNotFound)
		// and a refused credential.
		if _, _, serr := c.stat(ctx, s, ref); serr != nil {
			return nil, serr
		}
		return nil, classify("fetch", ref, err)
	}
	if desc.Size < 0 {
		rc.Close()
		return nil, fmt.Errorf("upstream fetch %s: no size given", ref)
	}
	desc.Digest, desc.MediaType = dgst, "application/octet-stream"
	br := bufio.NewReaderSize(rc, 32<<10)
	if _, err := br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, classify("fetch", ref, err)
	}
	return &Blob{ReadCloser: &verifier{r: br, c: rc, desc: desc, v: dgst.Verifier(), ref: ref}, Descriptor: desc}, nil
}
