package containerd_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestReview16_DigestOnlyPrivateImageReadAsMirrored: a pod pinned by
// digest (registry.local/private/app@sha256:…, no tag: CRI then names the
// image by digest and ID only) pulls from the unmirrored registry.local
// (443); containerd labels its blobs "registry.local". The node also holds
// a tagged image of the mirrored registry.local:5000. Images and image
// events skip names without a tag before noting the registry, so the bare
// host is never a candidate, and the private blobs read as
// registry.local:5000's only: the mirrors policy (mirrors:
// [registry.local:5000]) serves them to any peer that names the digest.
// Before 5aebe58 the label read as registry.local and was refused.
func TestReview16_DigestOnlyPrivateImageReadAsMirrored(t *testing.T) {
	d := ctrtest.Start(t)
	s, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	importImage := func(name string, seed uint64) *testimage.Image {
		img, err := testimage.Build(testimage.Spec{Name: name, LayerSizes: []int64{128}, Seed: seed})
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
		return img
	}
	importImage("registry.local:5000/public/base:1", 161)
	// Import labels with the name's registry, as a pull from registry.local
	// (443) does: "containerd.io/distribution.source.registry.local".
	secret := importImage("registry.local/private/app:1", 162)
	pinned := "registry.local/private/app@" + secret.Target.Digest.String()
	if _, err := d.Ctr(t.Context(), "images", "tag", "--local", secret.Name, pinned); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ctr(t.Context(), "images", "rm", secret.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Images(t.Context()); err != nil { // the advertiser's scan
		t.Fatal(err)
	}
	layer := secret.Layers[0].Digest
	info, err := s.Stat(t.Context(), layer)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[containerd.LabelDistributionSource+"registry.local"] != "private/app" {
		t.Fatalf("setup: labels %v", info.Labels)
	}
	if !slices.Contains(info.Registries, "registry.local") {
		t.Fatalf("private layer of %s known under %v: the unmirrored registry.local is no candidate, a mirrors policy naming registry.local:5000 serves it", pinned, info.Registries)
	}
}
