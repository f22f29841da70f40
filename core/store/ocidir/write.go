package ocidir

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
)

// ContentStore returns a containerd content store over the layout's blobs
// (containerd's local store lays blobs out exactly as OCI does), for writers
// such as the importer and the test-image builder.
func (s *Store) ContentStore() (content.Store, error) {
	cs, err := local.NewStore(s.dir)
	if err != nil {
		return nil, fmt.Errorf("content store over %s: %w", s.dir, err)
	}
	return cs, nil
}

// Import reads an OCI-layout or docker-save tar and names its images in
// index.json. It returns the imported image names.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]string, error) {
	cs, err := s.ContentStore()
	if err != nil {
		return nil, err
	}
	idx, err := archive.ImportIndex(ctx, cs, r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	b, err := content.ReadBlob(ctx, cs, idx)
	if err != nil {
		return nil, fmt.Errorf("import: read index: %w", err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("import: parse index: %w", err)
	}
	var names []string
	var entries []ocispec.Descriptor
	for _, d := range index.Manifests {
		img, ok := imageOf(d)
		if !ok {
			continue
		}
		d.Annotations = map[string]string{AnnotationImageName: img.Name}
		entries = append(entries, d)
		names = append(names, img.Name)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("import: the archive names no image (no %s or full %s annotation)", AnnotationImageName, AnnotationRefName)
	}
	if err := s.SetImages(entries...); err != nil {
		return nil, err
	}
	return names, nil
}

// SetImages adds or replaces index.json entries; each must carry an image
// name annotation. The write is atomic.
func (s *Store) SetImages(entries ...ocispec.Descriptor) error {
	return s.editIndex(func(idx *ocispec.Index) error {
		for _, e := range entries {
			img, ok := imageOf(e)
			if !ok {
				return fmt.Errorf("index entry %s has no image name", e.Digest)
			}
			idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
				o, ok := imageOf(d)
				return ok && o.Name == img.Name
			})
			idx.Manifests = append(idx.Manifests, e)
		}
		return nil
	})
}

// RemoveImage removes an image name from index.json (content stays).
func (s *Store) RemoveImage(name string) error {
	r, err := oci.ParseImageName(name)
	if err != nil {
		return err
	}
	return s.editIndex(func(idx *ocispec.Index) error {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			o, ok := imageOf(d)
			return ok && o.Name == r.String()
		})
		return nil
	})
}

func (s *Store) editIndex(edit func(*ocispec.Index) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		return fmt.Errorf("read %s: %w", s.indexPath(), err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("parse %s: %w", s.indexPath(), err)
	}
	if err := edit(&idx); err != nil {
		return err
	}
	idx.SchemaVersion, idx.MediaType = 2, ocispec.MediaTypeImageIndex
	out, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	return writeAtomic(s.indexPath(), out)
}
