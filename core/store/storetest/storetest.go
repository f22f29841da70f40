// Package storetest is the conformance test every store.Store backend
// passes: the same assertions run on memory, oci-layout and a real
// containerd.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// Harness gives the conformance test a store and a way to add images.
type Harness struct {
	Store store.Store
	// Add puts a built image into the store under its name.
	Add func(ctx context.Context, img *testimage.Image) error
	// Remove deletes the image name from the store.
	Remove func(ctx context.Context, name string) error
}

// Conformance runs the store contract against h.
func Conformance(t *testing.T, h Harness) {
	ctx := t.Context()
	img, err := testimage.Build(testimage.Spec{
		Name: "docker.io/library/conformance:1.0", Platforms: []string{"linux/amd64", "linux/arm64"},
		LayerSizes: []int64{1 << 10, 300 << 10}, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	var events <-chan store.Event
	if sub, ok := h.Store.(store.Subscriber); ok {
		sctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		events, err = sub.Subscribe(sctx)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	if err := h.Add(ctx, img); err != nil {
		t.Fatalf("add image: %v", err)
	}
	ref, _ := oci.ParseImageName(img.Name)

	t.Run("Resolve", func(t *testing.T) {
		d, err := h.Store.Resolve(ctx, ref.Registry, ref.Repository, ref.Tag)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if d.Digest != img.Target.Digest || d.Size != img.Target.Size {
			t.Fatalf("Resolve = %s/%d, want %s/%d", d.Digest, d.Size, img.Target.Digest, img.Target.Size)
		}
		if _, err := h.Store.Resolve(ctx, ref.Registry, ref.Repository, "missing"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Resolve(missing) err = %v, want ErrNotFound", err)
		}
	})
	t.Run("StatOpen", func(t *testing.T) {
		for _, d := range img.Digests() {
			want := img.Blobs[d]
			info, err := h.Store.Stat(ctx, d)
			if err != nil {
				t.Fatalf("Stat(%s): %v", d, err)
			}
			if info.Size != int64(len(want)) {
				t.Fatalf("Stat(%s).Size = %d, want %d", d, info.Size, len(want))
			}
			c, err := h.Store.Open(ctx, d)
			if err != nil {
				t.Fatalf("Open(%s): %v", d, err)
			}
			if c.Size() != int64(len(want)) {
				t.Fatalf("Open(%s).Size = %d", d, c.Size())
			}
			got, err := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("content of %s differs (err %v)", d, err)
			}
			if len(want) > 10 {
				part := make([]byte, 7)
				if _, err := c.ReadAt(part, 3); err != nil || !bytes.Equal(part, want[3:10]) {
					t.Fatalf("ReadAt(3) of %s differs (err %v)", d, err)
				}
			}
			c.Close()
		}
		missing := digest.FromString("not in the store")
		if _, err := h.Store.Stat(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Stat(missing) err = %v", err)
		}
		if _, err := h.Store.Open(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Open(missing) err = %v", err)
		}
	})
	t.Run("Sources", func(t *testing.T) {
		// Every blob of the image is known under its registry and
		// repository: serve policies judge content on that, not on what a
		// requester names.
		for _, d := range img.Digests() {
			info, err := h.Store.Stat(ctx, d)
			if err != nil {
				t.Fatalf("Stat(%s): %v", d, err)
			}
			if !slices.Contains(info.Registries, ref.Registry) || !slices.Contains(info.Repositories, ref.Name()) {
				t.Fatalf("Stat(%s) sources = %v %v, want %s and %s", d, info.Registries, info.Repositories, ref.Registry, ref.Name())
			}
		}
	})
	t.Run("Images", func(t *testing.T) {
		imgs, err := h.Store.Images(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, i := range imgs {
			if i.Name == img.Name {
				found = true
				if i.Registry != "docker.io" || i.Repository != "library/conformance" || i.Tag != "1.0" || i.Target.Digest != img.Target.Digest {
					t.Fatalf("image = %+v", i)
				}
			}
		}
		if !found {
			t.Fatalf("Images() = %v, missing %s", imgs, img.Name)
		}
	})
	t.Run("Walk", func(t *testing.T) {
		descs, err := store.Walk(ctx, h.Store, img.Target)
		if err != nil {
			t.Fatal(err)
		}
		if len(descs) != len(img.Blobs) {
			t.Fatalf("Walk found %d descriptors, want %d", len(descs), len(img.Blobs))
		}
	})
	if events != nil {
		t.Run("Events", func(t *testing.T) {
			waitFor(t, events, store.EventImageCreate, img.Name)
			if h.Remove == nil {
				return
			}
			if err := h.Remove(ctx, img.Name); err != nil {
				t.Fatal(err)
			}
			waitFor(t, events, store.EventImageDelete, img.Name)
			if _, err := h.Store.Resolve(ctx, ref.Registry, ref.Repository, ref.Tag); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Resolve after delete err = %v", err)
			}
		})
	}
}

func waitFor(t *testing.T, ch <-chan store.Event, typ store.EventType, name string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed before %s %s", typ, name)
			}
			if ev.Type == typ && ev.Image.Name == name {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s within 10s", typ, name)
		}
	}
}
