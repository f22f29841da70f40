package containerd

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	ctr "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Import loads an OCI-layout or docker-save tar, as k3s does for air-gap
// images: all platforms the tar holds (platforms its index names but the
// tar lacks are skipped, as `docker save` from Docker's containerd image
// store and `ctr export` without --all-platforms write one platform under
// a full index), each image pinned (io.cri-containerd.pinned) so garbage
// collection keeps it, and every blob present labelled with
// containerd.io/distribution.source.<registry>=<repository> so the node
// knows which registry the content belongs to and shares it.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]string, error) {
	ctx = s.ctx(ctx)
	imgs, err := s.client.Import(ctx, r, ctr.WithAllPlatforms(true), ctr.WithSkipMissing(),
		ctr.WithImageLabels(map[string]string{LabelPinned: "pinned"}))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, img := range imgs {
		ref, err := oci.ParseImageName(img.Name)
		if err != nil {
			continue // digest-only names created by the importer
		}
		if err := s.labelSources(ctx, img, ref); err != nil {
			return names, err
		}
		names = append(names, img.Name)
	}
	return names, nil
}

func (s *Store) labelSources(ctx context.Context, img images.Image, ref oci.Reference) error {
	cs := s.client.ContentStore()
	key := LabelDistributionSource + ref.Registry
	var descs []ocispec.Descriptor
	walk := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		descs = append(descs, d)
		children, err := images.Children(ctx, cs, d)
		if err != nil && store.IsManifestOrIndex(d.MediaType) {
			return nil, err
		}
		var present []ocispec.Descriptor
		for _, c := range children {
			if _, err := cs.Info(ctx, c.Digest); err == nil {
				present = append(present, c)
			}
		}
		return present, nil
	})
	if err := images.Walk(ctx, walk, img.Target); err != nil {
		return fmt.Errorf("walk %s: %w", img.Name, err)
	}
	for _, d := range descs {
		info, err := cs.Info(ctx, d.Digest)
		if err != nil {
			return fmt.Errorf("label %s: %w", d.Digest, err)
		}
		// The label lists every repository the blob came from, comma
		// separated, as containerd's own pull handler writes it.
		cur := info.Labels[key]
		if slices.Contains(strings.Split(cur, ","), ref.Repository) {
			continue
		}
		val := ref.Repository
		if cur != "" {
			val = cur + "," + ref.Repository
		}
		info.Labels = map[string]string{key: val}
		if _, err := cs.Update(ctx, content.Info{Digest: d.Digest, Labels: info.Labels}, "labels."+key); err != nil {
			return fmt.Errorf("label %s: %w", d.Digest, err)
		}
	}
	return nil
}
