// Package ocidir is the embedded default store: an OCI image-layout
// directory (oci-layout, index.json, blobs/<alg>/<hex>). Images are named by
// the io.containerd.image.name or org.opencontainers.image.ref.name
// annotations of index.json entries. Blobs are plain files, so the registry
// serves them with sendfile.
package ocidir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store"
)

// Annotations naming an image in index.json.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = ocispec.AnnotationRefName
)

// Store reads an OCI image-layout directory.
type Store struct {
	dir string
	log *slog.Logger

	mu      sync.RWMutex
	images  map[string]store.Image
	gen     uint64             // counts reloads of index.json
	sources *store.SourceIndex // of images, from the names that reach the content; nil until a Stat needs it
	stamp   indexStamp

	building sync.Mutex // one sources build at a time
}

var (
	_ store.Store      = (*Store)(nil)
	_ store.Subscriber = (*Store)(nil)
	_ store.Exister    = (*Store)(nil)
)

// Open opens (and creates when missing) an OCI layout at dir.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Init(dir); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, log: log}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Init creates an empty OCI layout at dir unless one exists.
func Init(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return fmt.Errorf("create oci layout %s: %w", dir, err)
	}
	layout := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeAtomic(layout, b); err != nil {
			return err
		}
	}
	index := filepath.Join(dir, ocispec.ImageIndexFile)
	if _, err := os.Stat(index); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}})
		if err := writeAtomic(index, b); err != nil {
			return err
		}
	}
	return nil
}

// Dir returns the layout directory.
func (s *Store) Dir() string { return s.dir }

// Name implements store.Namer.
func (s *Store) Name() string { return "oci:" + s.dir }

// BlobPath returns where content with digest d lives (it may not exist).
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob path: %w", err)
	}
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// Resolve implements store.Store.
func (s *Store) Resolve(_ context.Context, registry, repository, tag string) (ocispec.Descriptor, error) {
	if _, err := s.reloadIfChanged(); err != nil {
		return ocispec.Descriptor{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	img, ok := s.images[registry+"/"+repository+":"+tag]
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("%s/%s:%s: %w", registry, repository, tag, store.ErrNotFound)
	}
	return img.Target, nil
}

// Stat implements store.Store.
func (s *Store) Stat(_ context.Context, d digest.Digest) (store.Info, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
		}
		return store.Info{}, fmt.Errorf("stat %s: %w", d, err)
	}
	if _, err := s.reloadIfChanged(); err != nil {
		return store.Info{}, err
	}
	info := store.Info{Digest: d, Size: fi.Size()}
	s.mu.RLock()
	for _, img := range s.images {
		if img.Target.Digest == d {
			info.MediaType = img.Target.MediaType
			break
		}
	}
	s.mu.RUnlock()
	info.Registries, info.Repositories = s.sourceIndex().Lookup(d)
	return info, nil
}

// Exists implements store.Exister: presence without the sources, so walks
// (the advertiser's scans) do not build them.
func (s *Store) Exists(_ context.Context, d digest.Digest) error {
	_, err := blobFiles{s}.Stat(context.Background(), d)
	return err
}

// sourceIndex returns the sources of the current images, building them on
// the first Stat after index.json changed: only serve decisions need
// them, and a node that serves nothing should not hold them.
func (s *Store) sourceIndex() *store.SourceIndex {
	s.mu.RLock()
	idx := s.sources
	s.mu.RUnlock()
	if idx != nil {
		return idx
	}
	s.building.Lock()
	defer s.building.Unlock()
	s.mu.RLock()
	idx, images, gen := s.sources, s.images, s.gen
	s.mu.RUnlock()
	if idx != nil {
		return idx
	}
	idx = s.sourcesOf(images)
	s.mu.Lock()
	if s.gen == gen {
		s.sources = idx
	}
	s.mu.Unlock()
	return idx
}

// blobFiles is the layout's blobs as a store.Store for store.Walk, without
// the index (which reload is busy reading).
type blobFiles struct{ s *Store }

func (b blobFiles) Resolve(context.Context, string, string, string) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, store.ErrNotFound
}

func (b blobFiles) Stat(_ context.Context, d digest.Digest) (store.Info, error) {
	p, err := b.s.BlobPath(d)
	if err != nil {
		return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
		}
		return store.Info{}, fmt.Errorf("stat %s: %w", d, err)
	}
	return store.Info{Digest: d, Size: fi.Size()}, nil
}

func (b blobFiles) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	return b.s.Open(ctx, d)
}

func (b blobFiles) Images(context.Context) ([]store.Image, error) { return nil, nil }

// sourcesOf maps every blob the images reach to the registries and
// repositories of the images' names: what the content was imported under.
func (s *Store) sourcesOf(images map[string]store.Image) *store.SourceIndex {
	out := store.NewSourceIndex()
	for _, img := range images {
		descs, err := store.Walk(context.Background(), blobFiles{s}, img.Target)
		if err != nil {
			s.log.Warn("walk image for its sources", "image", img.Name, "err", err)
		}
		for _, d := range descs {
			out.Add(d.Digest, img.Registry, img.Repository)
		}
	}
	return out
}

// Open implements store.Store.
func (s *Store) Open(_ context.Context, d digest.Digest) (store.Content, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return store.OpenFile(p, d)
}

// Images implements store.Store.
func (s *Store) Images(context.Context) ([]store.Image, error) {
	if _, err := s.reloadIfChanged(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedImages(s.images), nil
}
