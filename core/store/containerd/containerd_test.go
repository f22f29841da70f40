package containerd_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/core/store/storetest"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

func TestStore_Conformance(t *testing.T) {
	d := ctrtest.Start(t)
	s, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ContentDir() == "" {
		t.Fatal("content directory not detected through introspection")
	}
	storetest.Conformance(t, storetest.Harness{
		Store: s,
		Add: func(ctx context.Context, img *testimage.Image) error {
			var buf bytes.Buffer
			if err := img.WriteTar(&buf); err != nil {
				return err
			}
			names, err := s.Import(ctx, &buf)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				t.Errorf("Import returned no names")
			}
			return nil
		},
		Remove: func(ctx context.Context, name string) error {
			_, err := d.Ctr(ctx, "images", "rm", "--sync", name)
			return err
		},
	})
	t.Run("ImportLabels", func(t *testing.T) {
		img, err := testimage.Build(testimage.Spec{Name: "registry.k8s.io/pause:3.10", LayerSizes: []int64{100}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := img.WriteTar(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Import(t.Context(), &buf); err != nil {
			t.Fatal(err)
		}
		imgs, err := s.Images(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var pinned bool
		for _, i := range imgs {
			if i.Name == img.Name {
				pinned = i.Pinned
			}
		}
		if !pinned {
			t.Fatalf("imported image %s is not pinned: %+v", img.Name, imgs)
		}
		for _, d := range img.Digests() {
			info, err := s.Stat(t.Context(), d)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Registries) != 1 || info.Registries[0] != "registry.k8s.io" {
				t.Fatalf("content %s registries = %v, want [registry.k8s.io]", d, info.Registries)
			}
			if info.Labels["containerd.io/distribution.source.registry.k8s.io"] != "pause" {
				t.Fatalf("content %s labels = %v", d, info.Labels)
			}
		}
	})
}
