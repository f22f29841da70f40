package containerd_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestStore_ImportSinglePlatformExport imports tarballs whose index names
// every platform but that hold one (docker save from Docker's containerd
// image store, ctr export without --all-platforms), as k3s does: the
// missing platforms are skipped, and what is there is pinned, labelled
// with its registry and servable.
func TestStore_ImportSinglePlatformExport(t *testing.T) {
	d := ctrtest.Start(t)
	s, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	build := func(t *testing.T, name string, seed uint64) *testimage.Image {
		img, err := testimage.Build(testimage.Spec{Name: name, Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSizes: []int64{2000, 300}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	cases := []struct {
		name  string
		image string
		// tar writes the tarball of img holding linux/amd64 only.
		tar func(t *testing.T, img *testimage.Image) io.Reader
	}{
		{"docker save", "docker.io/library/web:1.0", func(t *testing.T, img *testimage.Image) io.Reader {
			var buf bytes.Buffer
			if err := img.WriteExport(&buf, testimage.Export{Platforms: []string{"linux/amd64"}, DockerManifest: true}); err != nil {
				t.Fatal(err)
			}
			return &buf
		}},
		{"oci layout, one platform", "ghcr.io/acme/tool:2", func(t *testing.T, img *testimage.Image) io.Reader {
			var buf bytes.Buffer
			if err := img.WriteExport(&buf, testimage.Export{Platforms: []string{"linux/amd64"}}); err != nil {
				t.Fatal(err)
			}
			return &buf
		}},
		{"ctr export", "quay.io/acme/agent:3", func(t *testing.T, img *testimage.Image) io.Reader {
			// The real thing: import every platform into a scratch
			// namespace, export one platform with ctr, import that.
			dir := t.TempDir()
			full := filepath.Join(dir, "full.tar")
			if err := img.WriteTarFile(full); err != nil {
				t.Fatal(err)
			}
			if out, err := d.Ctr(t.Context(), "-n", "scratch", "images", "import", "--all-platforms", "--no-unpack", full); err != nil {
				t.Fatalf("ctr import: %v: %s", err, out)
			}
			part := filepath.Join(dir, "part.tar")
			if out, err := d.Ctr(t.Context(), "-n", "scratch", "images", "export", "--platform", "linux/amd64", part, img.Name); err != nil {
				t.Fatalf("ctr export: %v: %s", err, out)
			}
			b, err := os.ReadFile(part)
			if err != nil {
				t.Fatal(err)
			}
			return bytes.NewReader(b)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := build(t, tc.image, uint64(10+i))
			names, err := s.Import(t.Context(), tc.tar(t, img))
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if len(names) != 1 || names[0] != img.Name {
				t.Fatalf("imported %v, want [%s]", names, img.Name)
			}
			imgs, err := s.Images(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got *store.Image
			for i := range imgs {
				if imgs[i].Name == img.Name {
					got = &imgs[i]
				}
			}
			if got == nil || !got.Pinned || got.Target.Digest != img.Target.Digest {
				t.Fatalf("image %s after import: %+v", img.Name, got)
			}
			present, err := img.PlatformDigests("linux/amd64")
			if err != nil {
				t.Fatal(err)
			}
			isPresent := map[digest.Digest]bool{}
			for _, dg := range present {
				isPresent[dg] = true
				info, err := s.Stat(t.Context(), dg)
				if err != nil {
					t.Fatalf("content %s: %v", dg, err)
				}
				if info.Labels["containerd.io/distribution.source."+got.Registry] != got.Repository {
					t.Fatalf("content %s labels = %v, want the distribution source %s", dg, info.Labels, img.Name)
				}
			}
			for _, dg := range img.Digests() {
				if isPresent[dg] {
					continue
				}
				if _, err := s.Stat(t.Context(), dg); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("content %s of the other platform: %v, want not found", dg, err)
				}
			}
			// What the node serves is exactly what is there.
			walked, err := store.Walk(t.Context(), s, got.Target)
			if err != nil {
				t.Fatal(err)
			}
			if len(walked) != len(present) {
				t.Fatalf("walk found %d descriptors, want the %d present", len(walked), len(present))
			}
		})
	}
}
