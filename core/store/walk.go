package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds how much of a manifest or index is read into
// memory (containerd uses the same 4 MiB limit).
const MaxManifestSize = 4 << 20

// ReadAll reads small content (manifests, indexes, configs) fully, refusing
// content larger than MaxManifestSize.
func ReadAll(ctx context.Context, s Store, dgst digest.Digest) ([]byte, error) {
	c, err := s.Open(ctx, dgst)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Size() > MaxManifestSize {
		return nil, fmt.Errorf("content %s is %d bytes, over the %d byte manifest limit", dgst, c.Size(), MaxManifestSize)
	}
	b := make([]byte, c.Size())
	if _, err := c.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", dgst, err)
	}
	return b, nil
}

// manifestish holds the fields of an index or manifest that name children.
type manifestish struct {
	MediaType string               `json:"mediaType"`
	Manifests []ocispec.Descriptor `json:"manifests"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
}

// Walk returns the descriptors reachable from target that are present in
// the store: the target itself, then for an index its manifests, for a
// manifest its config and layers. Children missing locally (the platforms
// containerd did not pull) are skipped, so the result is exactly what this
// node can serve. Each digest appears once.
func Walk(ctx context.Context, s Store, target ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	seen := map[digest.Digest]bool{}
	var out []ocispec.Descriptor
	var visit func(d ocispec.Descriptor, depth int) error
	visit = func(d ocispec.Descriptor, depth int) error {
		if seen[d.Digest] {
			return nil
		}
		if depth > 8 {
			return fmt.Errorf("walk %s: nesting deeper than 8", target.Digest)
		}
		if err := present(ctx, s, d.Digest); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		seen[d.Digest] = true
		out = append(out, d)
		if !IsManifestOrIndex(d.MediaType) {
			return nil
		}
		b, err := ReadAll(ctx, s, d.Digest)
		if err != nil {
			return err
		}
		var m manifestish
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("parse %s: %w", d.Digest, err)
		}
		for _, c := range m.Manifests {
			if err := visit(c, depth+1); err != nil {
				return err
			}
		}
		if m.Config != nil {
			if err := visit(*m.Config, depth+1); err != nil {
				return err
			}
		}
		for _, l := range m.Layers {
			if err := visit(l, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(target, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// Media types of manifests and indexes, OCI and Docker.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// IsManifestOrIndex reports whether mt is an image manifest or index type.
func IsManifestOrIndex(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// Exister is implemented by stores that can tell whether content is
// present more cheaply than Stat (which may work out its sources).
type Exister interface {
	Exists(ctx context.Context, d digest.Digest) error
}

// present is nil when d is in s, ErrNotFound when it is not.
func present(ctx context.Context, s Store, d digest.Digest) error {
	if e, ok := s.(Exister); ok {
		return e.Exists(ctx, d)
	}
	_, err := s.Stat(ctx, d)
	return err
}
