package ocidir_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestStore_RetainedPerBlob bounds what an open store keeps per blob. The
// sources (registries, repositories) of every blob used to be a set of
// maps per blob, built on every index change: ~600 bytes a blob, 6 MB of
// a node's 64 MiB budget at 10,000 keys (e2e
// TestNode_RSSWith10kAdvertisedKeys). Walks (the advertiser's scans) must
// not build them at all; a Stat (a serve) builds them once, shared per
// image.
func TestStore_RetainedPerBlob(t *testing.T) {
	const images, layers = 4, 1000
	dir := t.TempDir()
	blob := writeLayout(t, dir, images, layers)
	blobs := images * (layers + 2) // layers, config, manifest
	for _, tc := range []struct {
		name    string
		use     func(ctx context.Context, s *ocidir.Store) error
		maxBlob int64 // bytes retained per blob
	}{
		{"walked as the advertiser does", walkAll, 32},
		{"after a serve Stat", func(ctx context.Context, s *ocidir.Store) error {
			info, err := s.Stat(ctx, blob)
			if err == nil && len(info.Repositories) != 1 {
				err = fmt.Errorf("Stat(%s) repositories = %v, want one", blob, info.Repositories)
			}
			return err
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *ocidir.Store
			got := retained(func() {
				var err error
				if s, err = ocidir.Open(dir, nil); err != nil {
					t.Fatal(err)
				}
				if err := tc.use(t.Context(), s); err != nil {
					t.Fatal(err)
				}
			})
			runtime.KeepAlive(s)
			t.Logf("%d bytes retained for %d blobs", got, blobs)
			if per := got / int64(blobs); per > tc.maxBlob {
				t.Errorf("store retains %d bytes for %d blobs (%d a blob), want ≤ %d a blob", got, blobs, per, tc.maxBlob)
			}
		})
	}
}

// writeLayout writes images of layers tiny layers each into an OCI layout
// at dir and returns one layer's digest.
func writeLayout(t *testing.T, dir string, images, layers int) digest.Digest {
	t.Helper()
	s, err := ocidir.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]int64, layers)
	for i := range sizes {
		sizes[i] = 16
	}
	var layer digest.Digest
	for i := range images {
		img, err := testimage.Build(testimage.Spec{Name: fmt.Sprintf("docker.io/scale/img%d:1.0", i), LayerSizes: sizes, Seed: uint64(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := img.WriteLayout(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		for d, mt := range img.Types {
			if mt == ocispec.MediaTypeImageLayer {
				layer = d
			}
		}
	}
	return layer
}

func walkAll(ctx context.Context, s *ocidir.Store) error {
	imgs, err := s.Images(ctx)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if _, err := store.Walk(ctx, s, img.Target); err != nil {
			return err
		}
	}
	return nil
}

// retained returns how much more live heap there is after f than before.
func retained(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC() // the second empties sync.Pool victim caches
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}
