package containerd_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestStore_ImportLabelsOnlyContentInTar: an import labels with its
// registry only the blobs whose bytes the tar holds. A tarball holding
// just an index named docker.io/library/evil:1 whose child is a private
// manifest already on the node (skipped as a missing platform) labels its
// own index and nothing of the private image; a tarball that holds a
// layer the private image shares labels that layer.
func TestStore_ImportLabelsOnlyContentInTar(t *testing.T) {
	d := ctrtest.Start(t)
	s, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const dockerSource = "containerd.io/distribution.source.docker.io"
	build := func(name string) *testimage.Image {
		img, err := testimage.Build(testimage.Spec{Name: name, Platforms: []string{"linux/amd64"}, LayerSizes: []int64{128, 256}, Seed: 72})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	importImage := func(img *testimage.Image) {
		var buf bytes.Buffer
		if err := img.WriteTar(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Import(t.Context(), &buf); err != nil {
			t.Fatal(err)
		}
	}
	labels := func(dg digest.Digest) map[string]string {
		info, err := s.Stat(t.Context(), dg)
		if err != nil {
			t.Fatalf("content %s: %v", dg, err)
		}
		return info.Labels
	}
	secret := build("registry.internal/secret/app:1.0")
	importImage(secret)

	// The attacker's tarball: knows the private manifest's digest, holds
	// none of its bytes.
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: secret.Manifests})
	idxDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(idx), Size: int64(len(idx)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "docker.io/library/evil:1", "io.containerd.image.name": "docker.io/library/evil:1"}}
	top, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{idxDesc}})
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", top},
		{"blobs/sha256/" + idxDesc.Digest.Encoded(), idx},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(t.Context(), &evil); err != nil {
		t.Fatalf("evil import: %v", err) // accepted (missing children are skipped); labels are what matter
	}
	if got := labels(idxDesc.Digest)[dockerSource]; got != "library/evil" {
		t.Errorf("the tar's own index: docker.io source %q, want library/evil", got)
	}
	for _, dg := range secret.Digests() {
		l := labels(dg)
		if v, ok := l[dockerSource]; ok {
			t.Errorf("private content %s labelled docker.io=%s by a tar that did not hold it", dg, v)
		}
		if l["containerd.io/distribution.source.registry.internal"] != "secret/app" {
			t.Errorf("private content %s lost its source: %v", dg, l)
		}
	}

	// A tar that holds the bytes of shared layers labels them: the
	// public image's config differs (it names the image), its layers not.
	public := build("docker.io/library/copy:1")
	importImage(public)
	for _, layer := range public.Layers {
		if got := labels(layer.Digest)[dockerSource]; got != "library/copy" {
			t.Errorf("layer %s brought by the public tar: docker.io source %q, want library/copy", layer.Digest, got)
		}
	}
}
