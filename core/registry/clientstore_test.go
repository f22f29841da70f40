package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// peerMirror is a registry.Mirror whose peers hold one manifest under one
// tag (and by its digest) and no blob; it counts the lookups.
type peerMirror struct {
	tag      string
	manifest []byte
	calls    atomic.Int32
}

func (m *peerMirror) Manifest(_ context.Context, ref oci.Reference) (registry.Manifest, error) {
	m.calls.Add(1)
	if ref.Tag == m.tag || ref.Digest == digest.FromBytes(m.manifest) {
		return registry.Manifest{Bytes: m.manifest, MediaType: "application/vnd.oci.image.index.v1+json", Peer: "p"}, nil
	}
	return registry.Manifest{}, fmt.Errorf("%s: %w", ref, store.ErrNotFound)
}

func (m *peerMirror) ServeBlob(_ context.Context, _ http.ResponseWriter, _ *http.Request, ref oci.Reference) error {
	m.calls.Add(1)
	return fmt.Errorf("%s: %w", ref, store.ErrNotFound)
}

// TestServer_ClientStore: over the local containerd's own store, the local
// containerd is never answered from that store (a moved tag would be
// pinned to the digest it already has, and :latest resolved without the
// resolve policy); only peers answer it, and peers are still served from
// the store. The embedded store keeps serving local requests.
func TestServer_ClientStore(t *testing.T) {
	t.Parallel()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:stable", LayerSizes: []int64{64}, Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	latest, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:latest", LayerSizes: []int64{64}, Seed: 22})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	for _, i := range []*testimage.Image{img, latest} {
		if err := i.AddTo(st, "docker.io"); err != nil {
			t.Fatal(err)
		}
	}
	moved := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	movedDigest := digest.FromBytes(moved)
	// resolve refuses :latest, as the shipped policy does.
	noLatest := &recorder{allow: func(in policy.Input) bool { return in.Action != policy.ActionResolve || in.Reference.Tag != "latest" }}
	layer := img.Layers[0].Digest.String()
	tests := []struct {
		name        string
		clientStore bool
		peer        string
		path        string
		status      int
		wantDigest  digest.Digest // Docker-Content-Digest of a 200
		code        string
		wantLookups int32
	}{
		{"moved tag comes from peers, not the store", true, "", "/v2/library/app/manifests/stable", 200, movedDigest, "", 1},
		{"manifest by digest held locally is not served to its own client", true, "", "/v2/library/app/manifests/" + img.Target.Digest.String(), 404, "", "MANIFEST_UNKNOWN", 1},
		{"blob held locally is not served to its own client", true, "", "/v2/library/app/blobs/" + layer, 404, "", "BLOB_UNKNOWN", 1},
		{"latest refused by resolve is a 404 without lookup", true, "", "/v2/library/app/manifests/latest", 404, "", "MANIFEST_UNKNOWN", 0},
		{"peer is served from the store", true, "peer-1", "/v2/library/app/manifests/stable", 200, img.Target.Digest, "", 0},
		{"peer gets blobs from the store", true, "peer-1", "/v2/library/app/blobs/" + layer, 200, img.Layers[0].Digest, "", 0},
		{"embedded store serves the local client", false, "", "/v2/library/app/manifests/stable", 200, img.Target.Digest, "", 0},
		{"embedded store serves local blobs", false, "", "/v2/library/app/blobs/" + layer, 200, img.Layers[0].Digest, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mir := &peerMirror{tag: "stable", manifest: moved}
			srv := httptest.NewServer(registry.New(st, registry.WithMirror(mir), registry.WithPolicy(noLatest), registry.WithClientStore(tt.clientStore)))
			defer srv.Close()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tt.path+"?ns=docker.io", nil)
			if tt.peer != "" {
				req.Header.Set(registry.PeerHeader, tt.peer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.code) {
				t.Fatalf("status %d body %.200s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); tt.status == 200 && got != tt.wantDigest.String() {
				t.Fatalf("Docker-Content-Digest = %s, want %s", got, tt.wantDigest)
			}
			if got := mir.calls.Load(); got != tt.wantLookups {
				t.Fatalf("peer lookups = %d, want %d", got, tt.wantLookups)
			}
		})
	}
}
