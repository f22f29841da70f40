package coalesce_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
)

// TestCoalescer_ServePeer_RateLimitedUpstreamBacksOff: an upstream that
// answers 429 (Retry-After: 60) is not asked again by the responsible node
// for every later requester of the rollout: the failure is remembered for
// Config.Backoff, and requesters get a 404 at once. Before, each of the
// 20 requesters made the node ask the upstream again (15 requests each:
// containerd's retries and the not-found check).
func TestCoalescer_ServePeer_RateLimitedUpstreamBacksOff(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Retry-After", "60")
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, http.StatusTooManyRequests)
	}))
	t.Cleanup(up.Close)
	c, err := coalesce.New(upstream.New(named(t, up.Listener.Addr().String())),
		coalesce.Config{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 1 << 20, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(c)))
	t.Cleanup(srv.Close)
	d := digest.FromString("layer")
	var first int32
	for i := range 20 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, d, up.Listener.Addr()), nil)
		req.Header.Set(registry.PeerHeader, "node-x")
		req.Header.Set(oci.CoalesceHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		if i == 0 {
			first = asked.Load()
		}
	}
	t.Logf("upstream asked %d times for the first requester, %d for all 20", first, asked.Load())
	if first == 0 {
		t.Fatal("the first requester did not make the node ask the upstream")
	}
	if n := asked.Load(); n != first {
		t.Errorf("a failing upstream was asked %d times for 20 requesters, %d for the first: later requesters must not ask again within the backoff", n, first)
	}
}

// TestCoalescer_ServePeer_BackoffExpires: once Config.Backoff has passed,
// the registry is asked again (a failure is not remembered for ever).
func TestCoalescer_ServePeer_BackoffExpires(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(up.Close)
	c, err := coalesce.New(upstream.New(named(t, up.Listener.Addr().String())),
		coalesce.Config{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 1 << 20, TTL: time.Minute, Backoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(c)))
	t.Cleanup(srv.Close)
	get := func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, digest.FromString("layer"), up.Listener.Addr()), nil)
		req.Header.Set(registry.PeerHeader, "node-x")
		req.Header.Set(oci.CoalesceHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get()
	n1 := asked.Load()
	get()
	if asked.Load() != n1 {
		t.Fatalf("asked again within the backoff: %d then %d", n1, asked.Load())
	}
	time.Sleep(300 * time.Millisecond)
	get()
	if asked.Load() == n1 {
		t.Fatal("not asked again after the backoff")
	}
}
