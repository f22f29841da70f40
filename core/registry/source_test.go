package registry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// readmePrivateRule is the private/ serve-deny drop-in of
// policies/README.md, taken from the README itself so that the example
// the operators copy is the one tested.
func readmePrivateRule(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "policies", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```rego\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if strings.Contains(block, "package sluice.serve") && strings.Contains(block, `"private/"`) {
			var out strings.Builder
			for _, line := range strings.Split(block, "\n") {
				out.WriteString(strings.TrimPrefix(line, "  ") + "\n")
			}
			return out.String()
		}
	}
	t.Fatal("policies/README.md has no private/ serve-deny example")
	return ""
}

// TestServer_ServeJudgedOnSource: what a peer writes in the path (registry
// by ?ns=, repository) is a claim; serve is judged on the registries and
// repositories this node knows the content under. With mirrors
// [docker.io], a node holding registry.internal/secret/app refuses its
// blobs and manifests to a peer that asks for them as docker.io's
// library/alpine, and the README's private/ rule holds whatever
// repository the peer names.
func TestServer_ServeJudgedOnSource(t *testing.T) {
	t.Parallel()
	build := func(name string, seed uint64) *testimage.Image {
		img, err := testimage.Build(testimage.Spec{Name: name, LayerSizes: []int64{128}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	secret := build("registry.internal/secret/app:1.0", 51)
	private := build("docker.io/private/app:1.0", 52)
	public := build("docker.io/library/alpine:3.20", 53)
	st := memory.New()
	for _, img := range []*testimage.Image{secret, private, public} {
		if err := img.AddTo(st); err != nil {
			t.Fatal(err)
		}
	}
	dropIn := t.TempDir()
	if err := os.WriteFile(filepath.Join(dropIn, "private.rego"), []byte(readmePrivateRule(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(t.Context(), []string{filepath.Join("..", "..", "policies"), dropIn})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	pol.SetMirrors([]string{"docker.io"})
	srv := httptest.NewServer(registry.New(st, registry.WithPolicy(pol)))
	defer srv.Close()
	tests := []struct {
		name, path string
		status     int
	}{
		{"secret layer named as docker.io alpine", "/v2/library/alpine/blobs/" + secret.Layers[0].Digest.String() + "?ns=docker.io", 403},
		{"secret index named as docker.io alpine", "/v2/library/alpine/manifests/" + secret.Target.Digest.String() + "?ns=docker.io", 403},
		{"secret layer named as its own repository", "/v2/secret/app/blobs/" + secret.Layers[0].Digest.String() + "?ns=registry.internal", 403},
		{"secret layer with the registry in capitals", "/v2/secret/app/blobs/" + secret.Layers[0].Digest.String() + "?ns=REGISTRY.INTERNAL", 403},
		{"private layer named as library/alpine", "/v2/library/alpine/blobs/" + private.Layers[0].Digest.String() + "?ns=docker.io", 403},
		{"private index named as library/alpine", "/v2/library/alpine/manifests/" + private.Target.Digest.String(), 403},
		{"private tag", "/v2/private/app/manifests/1.0", 403},
		{"public layer", "/v2/library/alpine/blobs/" + public.Layers[0].Digest.String() + "?ns=docker.io", 200},
		{"public layer named under another shared repository", "/v2/library/busybox/blobs/" + public.Layers[0].Digest.String(), 200},
		{"public tag", "/v2/library/alpine/manifests/3.20", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tt.path, nil)
			req.Header.Set(registry.PeerHeader, "peer-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d body %.200s, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == 403 && !strings.Contains(string(b), `"code":"DENIED"`) {
				t.Fatalf("body %s, want DENIED", b)
			}
		})
	}
}
