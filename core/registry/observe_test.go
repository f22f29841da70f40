package registry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

type chanObserver chan registry.RequestEvent

func (o chanObserver) Request(ev registry.RequestEvent) { o <- ev }

// splitMirror serves blobs it holds as if two peers had sent halves of
// them, reporting each as a mirror does; abort fails after the body began.
type splitMirror struct {
	blobs map[string][]byte
	abort bool
}

func (m splitMirror) Manifest(context.Context, oci.Reference) (registry.Manifest, error) {
	return registry.Manifest{}, store.ErrNotFound
}

func (m splitMirror) ServeBlob(ctx context.Context, w http.ResponseWriter, _ *http.Request, ref oci.Reference) error {
	b, ok := m.blobs[ref.Digest.String()]
	if !ok {
		return store.ErrNotFound
	}
	half := len(b) / 2
	registry.NoteFetched(ctx, "peerA", 0)
	registry.NoteFetched(ctx, "peerA", int64(half))
	_, _ = w.Write(b[:half])
	if m.abort {
		return registry.ErrAborted
	}
	registry.NoteFetched(ctx, "peerB", int64(len(b)-half))
	_, _ = w.Write(b[half:])
	return nil
}

// TestServer_Observer: every answered request reaches the observer with
// where it was served from, by which peers, the bytes and the decisions;
// an aborted response is reported too.
func TestServer_Observer(t *testing.T) {
	t.Parallel()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{4096}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	local := memory.New()
	if err := img.AddTo(local, "docker.io"); err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	remote := map[string][]byte{layer.Digest.String(): img.Blobs[layer.Digest]}
	pol, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pol.Close() })
	blobPath := "/v2/library/app/blobs/" + layer.Digest.String() + "?ns=docker.io"
	tests := []struct {
		name      string
		st        store.Store
		abort     bool
		peer      string
		path      string
		source    string
		status    int
		sent      int64
		from      []registry.PeerBytes
		decisions []policy.Action
	}{
		{name: "local blob", st: local, path: blobPath, source: "local", status: 200, sent: layer.Size,
			decisions: []policy.Action{policy.ActionServe}},
		{name: "blob to a peer", st: local, peer: "peerZ", path: blobPath, source: "local", status: 200, sent: layer.Size,
			decisions: []policy.Action{policy.ActionServe}},
		{name: "blob through peers", st: memory.New(), path: blobPath, source: "peer", status: 200, sent: 0,
			from:      []registry.PeerBytes{{Peer: "peerA", Bytes: layer.Size / 2}, {Peer: "peerB", Bytes: layer.Size - layer.Size/2}},
			decisions: []policy.Action{policy.ActionResolve}},
		{name: "aborted through peers", st: memory.New(), abort: true, path: blobPath, source: "peer", status: 0,
			from:      []registry.PeerBytes{{Peer: "peerA", Bytes: layer.Size / 2}},
			decisions: []policy.Action{policy.ActionResolve}},
		{name: "not found anywhere", st: memory.New(), path: "/v2/library/app/manifests/2.0?ns=docker.io", source: "none", status: 404,
			decisions: []policy.Action{policy.ActionResolve}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs := make(chanObserver, 4)
			srv := httptest.NewServer(registry.New(tc.st, registry.WithObserver(obs), registry.WithPolicy(pol),
				registry.WithMirror(splitMirror{blobs: remote, abort: tc.abort})))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tc.path, nil)
			if tc.peer != "" {
				req.Header.Set(registry.PeerHeader, tc.peer)
			}
			if resp, err := srv.Client().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			var ev registry.RequestEvent
			select {
			case ev = <-obs:
			case <-time.After(5 * time.Second):
				t.Fatal("observer not called")
			}
			if ev.Source != tc.source || ev.Status != tc.status || ev.Method != http.MethodGet {
				t.Errorf("source %q status %d method %s; want %q %d GET", ev.Source, ev.Status, ev.Method, tc.source, tc.status)
			}
			if tc.sent > 0 && ev.Sent != tc.sent {
				t.Errorf("sent %d, want %d", ev.Sent, tc.sent)
			}
			if !slices.Equal(ev.From, tc.from) {
				t.Errorf("from %v, want %v", ev.From, tc.from)
			}
			var acts []policy.Action
			for _, d := range ev.Decisions {
				acts = append(acts, d.Action)
				if !d.Allow {
					t.Errorf("decision %s denied: %v", d.Action, d.Reasons)
				}
			}
			if !slices.Equal(acts, tc.decisions) {
				t.Errorf("decisions %v, want %v", acts, tc.decisions)
			}
			if (ev.Peer != nil) != (tc.peer != "") || (ev.Peer != nil && ev.Peer.ID != tc.peer) {
				t.Errorf("peer %+v, want %q", ev.Peer, tc.peer)
			}
		})
	}
}
