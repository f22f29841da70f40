package registry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// recorder is a policy.Engine that answers from a function and keeps the
// inputs it saw.
type recorder struct {
	mu     sync.Mutex
	inputs []policy.Input
	allow  func(policy.Input) bool
}

func (r *recorder) Decide(_ context.Context, a policy.Action, in policy.Input) (policy.Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in.Action = a
	r.inputs = append(r.inputs, in)
	return policy.Decision{Allow: r.allow(in)}, nil
}

func TestServer_ServePolicy(t *testing.T) {
	t.Parallel()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{10}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	if err := img.AddTo(st); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{allow: func(in policy.Input) bool { return in.Reference.Digest != "" }} // digest only
	srv := httptest.NewServer(registry.New(st, registry.WithPolicy(rec)))
	defer srv.Close()
	tests := []struct {
		name, path, peer string
		status           int
		code             string
	}{
		{"tag to a peer is denied", "/v2/library/app/manifests/1.0", "peer-1", 403, "DENIED"},
		{"tag to local containerd is a 404", "/v2/library/app/manifests/1.0", "", 404, "MANIFEST_UNKNOWN"},
		{"digest to a peer is served", "/v2/library/app/manifests/" + img.Target.Digest.String(), "peer-1", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tt.path, nil)
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
				t.Fatalf("status %d body %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var sawPeer bool
	for _, in := range rec.inputs {
		if in.Action != policy.ActionServe {
			t.Fatalf("action %q, want serve", in.Action)
		}
		if in.Peer != nil && in.Peer.ID == "peer-1" {
			sawPeer = true
		}
		if in.Reference.Registry != "docker.io" || in.Reference.Repository != "library/app" || in.Reference.Kind != policy.KindManifest {
			t.Fatalf("reference %+v", in.Reference)
		}
	}
	if !sawPeer {
		t.Fatal("the peer's identity never reached the policy input")
	}
}
