// Package memory is an in-memory store.Store for tests: content by digest,
// named images, and change events.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Store keeps content and images in memory. The zero value is not usable;
// call New.
type Store struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest][]byte
	types   map[digest.Digest]string
	sources map[digest.Digest][]string
	known   *store.SourceIndex // from the names that reach the content
	images  map[string]store.Image
	subs    []chan store.Event
}

var (
	_ store.Store      = (*Store)(nil)
	_ store.Subscriber = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		blobs:   map[digest.Digest][]byte{},
		types:   map[digest.Digest]string{},
		sources: map[digest.Digest][]string{},
		known:   store.NewSourceIndex(),
		images:  map[string]store.Image{},
	}
}

// Name implements store.Namer.
func (s *Store) Name() string { return "memory" }

// Add stores content with an optional media type and returns its descriptor.
func (s *Store) Add(mediaType string, b []byte, registries ...string) ocispec.Descriptor {
	d := digest.FromBytes(b)
	s.mu.Lock()
	_, had := s.blobs[d]
	s.blobs[d] = bytes.Clone(b)
	s.types[d] = mediaType
	s.sources[d] = append([]string(nil), registries...)
	s.mu.Unlock()
	if !had {
		s.emit(store.Event{Type: store.EventContentCreate, Digest: d})
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// Delete removes content.
func (s *Store) Delete(d digest.Digest) {
	s.mu.Lock()
	_, had := s.blobs[d]
	delete(s.blobs, d)
	delete(s.types, d)
	s.known.Delete(d)
	s.mu.Unlock()
	if had {
		s.emit(store.Event{Type: store.EventContentDelete, Digest: d})
	}
}

// Tag names target as the image name (e.g. docker.io/library/x:1). The
// content the name reaches is known under its registry and repository
// from then on, as containerd's distribution source labels would say.
func (s *Store) Tag(name string, target ocispec.Descriptor) error {
	r, err := oci.ParseImageName(name)
	if err != nil {
		return err
	}
	img := store.Image{Name: r.String(), Registry: r.Registry, Repository: r.Repository, Tag: r.Tag, Target: target}
	descs, err := store.Walk(context.Background(), s, target)
	if err != nil {
		return fmt.Errorf("tag %s: %w", name, err)
	}
	s.mu.Lock()
	for _, d := range descs {
		s.known.Add(d.Digest, r.Registry, r.Repository)
	}
	_, had := s.images[img.Name]
	s.images[img.Name] = img
	s.mu.Unlock()
	t := store.EventImageCreate
	if had {
		t = store.EventImageUpdate
	}
	s.emit(store.Event{Type: t, Image: img})
	return nil
}

// Untag removes an image name.
func (s *Store) Untag(name string) {
	s.mu.Lock()
	img, had := s.images[name]
	delete(s.images, name)
	s.mu.Unlock()
	if had {
		s.emit(store.Event{Type: store.EventImageDelete, Image: store.Image{Name: img.Name, Registry: img.Registry, Repository: img.Repository, Tag: img.Tag}})
	}
}

// Resolve implements store.Store.
func (s *Store) Resolve(_ context.Context, registry, repository, tag string) (ocispec.Descriptor, error) {
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[d]
	if !ok {
		return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	regs, repos := s.known.Lookup(d)
	if len(s.sources[d]) > 0 {
		set := store.SourceSet{}
		for _, r := range regs {
			set.Add(r, "")
		}
		for _, name := range repos {
			r, repo, _ := strings.Cut(name, "/")
			set.Add(r, repo)
		}
		for _, r := range s.sources[d] {
			set.Add(oci.NormalizeRegistry(r), "")
		}
		regs, repos = set.Lists()
	}
	return store.Info{Digest: d, Size: int64(len(b)), MediaType: s.types[d], Registries: regs, Repositories: repos}, nil
}

// Open implements store.Store.
func (s *Store) Open(_ context.Context, d digest.Digest) (store.Content, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[d]
	if !ok {
		return nil, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return content{bytes.NewReader(b)}, nil
}

type content struct{ *bytes.Reader }

func (content) Close() error { return nil }

// Images implements store.Store.
func (s *Store) Images(context.Context) ([]store.Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]store.Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Subscribe implements store.Subscriber.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	ch := make(chan store.Event, 256)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, c := range s.subs {
			if c == ch {
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				close(ch)
				return
			}
		}
	}()
	return ch, nil
}

func (s *Store) emit(ev store.Event) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.subs {
		select {
		case c <- ev:
		default: // a subscriber that does not keep up misses events; it re-lists on its own schedule
		}
	}
}
