package registry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// TestServer_ServeUnlabelledContent: content in the node's containerd
// without distribution source labels (ctr import, nerdctl build/load) is
// still known under the names of the images that reach it. With mirrors
// [docker.io], a node whose containerd holds registry.internal/secret/app
// imported with plain `ctr images import` must not serve its layer to a
// peer that names it as docker.io's library/alpine.
func TestServer_ServeUnlabelledContent(t *testing.T) {
	d := ctrtest.Start(t)
	st, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secret, err := testimage.Build(testimage.Spec{Name: "registry.internal/secret/app:1.0", Platforms: []string{"linux/amd64"}, LayerSizes: []int64{128}, Seed: 61})
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(t.TempDir(), "secret.tar")
	if err := secret.WriteTarFile(tar); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Ctr(t.Context(), "-n", ctrtest.Namespace, "images", "import", "--no-unpack", "--all-platforms", tar); err != nil {
		t.Fatalf("ctr import: %v: %s", err, out)
	}
	pol, err := policy.Load(t.Context(), []string{filepath.Join("..", "..", "policies")})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	pol.SetMirrors([]string{"docker.io"})
	srv := httptest.NewServer(registry.New(st, registry.WithPolicy(pol), registry.WithClientStore(true)))
	defer srv.Close()
	for _, path := range []string{
		"/v2/library/alpine/blobs/" + secret.Layers[0].Digest.String() + "?ns=docker.io",
		"/v2/library/alpine/manifests/" + secret.Target.Digest.String() + "?ns=docker.io",
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		req.Header.Set(registry.PeerHeader, "peer-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d (%d bytes), want 403: content known only under registry.internal", path, resp.StatusCode, len(b))
		}
	}
}
