package registry_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// TestServer_ImportCannotLaunderPrivateContent: an import tarball that
// holds only an index naming docker.io/library/evil:1 whose child is the
// digest of a private manifest already on the node (absent from the tar,
// skipped as a "missing platform") must not make that private content
// servable as docker.io's.
func TestServer_ImportCannotLaunderPrivateContent(t *testing.T) {
	d := ctrtest.Start(t)
	st, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secret, err := testimage.Build(testimage.Spec{Name: "registry.internal/secret/app:1.0", Platforms: []string{"linux/amd64"}, LayerSizes: []int64{128}, Seed: 71})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := secret.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	// The attacker's tarball: knows one digest, holds no private byte.
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: secret.Manifests})
	idxDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(idx), Size: int64(len(idx)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "docker.io/library/evil:1", "io.containerd.image.name": "docker.io/library/evil:1"}}
	top, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{idxDesc}})
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	for name, b := range map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": top, "blobs/sha256/" + idxDesc.Digest.Encoded(): idx} {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))})
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	if names, err := st.Import(t.Context(), &evil); err != nil {
		t.Logf("evil import refused: %v", err)
	} else {
		t.Logf("evil import accepted: %v", names)
	}
	pol, err := policy.Load(t.Context(), []string{filepath.Join("..", "..", "policies")})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	pol.SetMirrors([]string{"docker.io"})
	srv := httptest.NewServer(registry.New(st, registry.WithPolicy(pol), registry.WithClientStore(true)))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v2/library/evil/blobs/"+secret.Layers[0].Digest.String()+"?ns=docker.io", nil)
	req.Header.Set(registry.PeerHeader, "peer-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("private layer after an index-only import: status %d (%d bytes), want 403", resp.StatusCode, len(b))
	}
}
