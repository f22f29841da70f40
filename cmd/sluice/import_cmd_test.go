package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestImportCmd_SinglePlatformExport runs `sluice import` on the tarballs
// a single-platform export writes (the index names every platform, the
// tar holds one), into both stores: each goes through its own import
// code, and each must name the image and serve what the tar holds.
func TestImportCmd_SinglePlatformExport(t *testing.T) {
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/web:1.0", Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSizes: []int64{2000, 300}, Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	present, err := img.PlatformDigests("linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	stores := []struct {
		name string
		uri  func(t *testing.T) string
	}{
		{"oci", func(t *testing.T) string { return "oci:" + t.TempDir() }},
		{"containerd", func(t *testing.T) string { return "containerd://" + ctrtest.Start(t).Socket }},
	}
	for _, st := range stores {
		for _, docker := range []bool{true, false} {
			name := st.name + "/ctr-export"
			if docker {
				name = st.name + "/docker-save"
			}
			t.Run(name, func(t *testing.T) {
				tarPath := filepath.Join(t.TempDir(), "web.tar")
				var buf bytes.Buffer
				if err := img.WriteExport(&buf, testimage.Export{Platforms: []string{"linux/amd64"}, DockerManifest: docker}); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				uri := st.uri(t)
				var stdout, stderr bytes.Buffer
				if err := importCmd(t.Context(), []string{"--store", uri, "--containerd-namespace", ctrtest.Namespace, tarPath}, &stdout, &stderr); err != nil {
					t.Fatalf("sluice import: %v\n%s", err, stderr.String())
				}
				if !strings.Contains(stdout.String(), "imported "+img.Name) {
					t.Fatalf("output %q does not name %s", stdout.String(), img.Name)
				}
				s, closeStore, err := openStore(t.Context(), uri, ctrtest.Namespace, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer closeStore()
				if _, ok := s.(*ocidir.Store); ok != (st.name == "oci") {
					t.Fatalf("store %T for %s", s, uri)
				}
				target, err := s.Resolve(t.Context(), "docker.io", "library/web", "1.0")
				if err != nil || target.Digest != img.Target.Digest {
					t.Fatalf("resolve: %v %v, want %s", target.Digest, err, img.Target.Digest)
				}
				walked, err := store.Walk(t.Context(), s, target)
				if err != nil {
					t.Fatal(err)
				}
				if len(walked) != len(present) {
					t.Fatalf("the store serves %d descriptors of the image, want the %d in the tar", len(walked), len(present))
				}
			})
		}
	}
}
