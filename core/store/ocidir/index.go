package ocidir

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// indexStamp identifies a version of index.json cheaply.
type indexStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

func (s *Store) indexPath() string { return filepath.Join(s.dir, ocispec.ImageIndexFile) }

// reloadIfChanged re-reads index.json when its stamp changed and returns
// the events the change implies.
func (s *Store) reloadIfChanged() ([]store.Event, error) {
	st, err := stampOf(s.indexPath())
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	same := st == s.stamp
	s.mu.RUnlock()
	if same {
		return nil, nil
	}
	return s.reload()
}

func (s *Store) reload() ([]store.Event, error) {
	st, err := stampOf(s.indexPath())
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.indexPath(), err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("parse %s: %w", s.indexPath(), err)
	}
	images := map[string]store.Image{}
	for _, d := range idx.Manifests {
		img, ok := imageOf(d)
		if !ok {
			s.log.Debug("index entry without an image name", "digest", d.Digest)
			continue
		}
		images[img.Name] = img
	}
	s.mu.Lock()
	old := s.images
	s.images, s.sources, s.stamp = images, nil, st // sources: built when a Stat asks
	s.gen++
	s.mu.Unlock()
	return diffImages(old, images), nil
}

// imageOf names an index.json entry: io.containerd.image.name first, then
// org.opencontainers.image.ref.name when it is a full reference.
func imageOf(d ocispec.Descriptor) (store.Image, bool) {
	for _, key := range []string{AnnotationImageName, AnnotationRefName} {
		name := d.Annotations[key]
		if name == "" {
			continue
		}
		r, err := oci.ParseImageName(name)
		if err != nil || r.Tag == "" {
			continue
		}
		return store.Image{
			Name: r.String(), Registry: r.Registry, Repository: r.Repository, Tag: r.Tag,
			Target: ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Platform: d.Platform},
			Pinned: true, Labels: d.Annotations,
		}, true
	}
	return store.Image{}, false
}

func diffImages(old, cur map[string]store.Image) []store.Event {
	var evs []store.Event
	for name, img := range cur {
		o, had := old[name]
		switch {
		case !had:
			evs = append(evs, store.Event{Type: store.EventImageCreate, Image: img})
		case o.Target.Digest != img.Target.Digest:
			evs = append(evs, store.Event{Type: store.EventImageUpdate, Image: img})
		}
	}
	for name, o := range old {
		if _, ok := cur[name]; !ok {
			evs = append(evs, store.Event{Type: store.EventImageDelete, Image: store.Image{Name: o.Name, Registry: o.Registry, Repository: o.Repository, Tag: o.Tag, Target: o.Target}})
		}
	}
	return evs
}

func sortedImages(m map[string]store.Image) []store.Image {
	out := make([]store.Image, 0, len(m))
	for _, img := range m {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Subscribe implements store.Subscriber by polling index.json, which is
// cheap (one stat a tick) and works on every filesystem.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	ch := make(chan store.Event, 64)
	s.mu.RLock()
	last := s.images
	s.mu.RUnlock()
	go func() {
		defer close(ch)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := s.reloadIfChanged(); err != nil {
				s.log.Warn("reload oci index", "dir", s.dir, "err", err)
				continue
			}
			s.mu.RLock()
			cur := s.images
			s.mu.RUnlock()
			evs := diffImages(last, cur)
			last = cur
			for _, ev := range evs {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func stampOf(path string) (indexStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return indexStamp{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return indexStamp{size: fi.Size(), mtime: fi.ModTime(), ino: inode(fi)}, nil
}
