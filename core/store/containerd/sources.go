package containerd

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// imageSources knows, for content without distribution source labels
// (`ctr images import`, nerdctl build or load), the registries and
// repositories of the images that reach it, so a serve policy judges such
// content on what the node holds it as, not on what a peer names. The map
// is rebuilt when the image list changes (names, targets, update times).
type imageSources struct {
	mu    sync.Mutex
	stamp string
	m     *store.SourceIndex
}

// of returns the sources of d from the images of the namespace.
func (is *imageSources) of(ctx context.Context, s *Store, d digest.Digest) (registries, repositories []string, err error) {
	imgs, err := s.client.ImageService().List(s.ctx(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("list images: %w", err)
	}
	var b strings.Builder
	for _, img := range imgs {
		fmt.Fprintf(&b, "%s\x00%s\x00%d\n", img.Name, img.Target.Digest, img.UpdatedAt.UnixNano())
	}
	stamp := b.String()
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.m == nil || stamp != is.stamp {
		m := store.NewSourceIndex()
		for _, img := range imgs {
			r, err := oci.ParseImageName(img.Name)
			if err != nil {
				continue // digest-only names and bare IDs name no registry
			}
			s.ported.note(r.Registry)
			descs, err := store.Walk(ctx, labelStore{s}, img.Target)
			if err != nil {
				s.log.Warn("walk image for its sources", "image", img.Name, "err", err)
			}
			for _, desc := range descs {
				m.Add(desc.Digest, r.Registry, r.Repository)
			}
		}
		is.stamp, is.m = stamp, m
	}
	registries, repositories = is.m.Lookup(d)
	return registries, repositories, nil
}

// labelStore is the Store whose Stat reads labels only, for walking
// images without recursing into imageSources.
type labelStore struct{ *Store }

func (l labelStore) Stat(ctx context.Context, d digest.Digest) (store.Info, error) {
	return l.Store.statLabels(ctx, d)
}

func (l labelStore) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	return l.Store.Open(ctx, d)
}

func (l labelStore) Resolve(ctx context.Context, registry, repository, tag string) (ocispec.Descriptor, error) {
	return l.Store.Resolve(ctx, registry, repository, tag)
}

// Exists implements store.Exister: presence without the sources, for
// walks (the advertiser walks every image on each scan).
func (s *Store) Exists(ctx context.Context, d digest.Digest) error {
	_, err := s.statLabels(ctx, d)
	return err
}
