package coalesce_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
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
	srv := coalescingServer(t, named(t, up.Listener.Addr().String()), coalesce.Config{})
	url := fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, digest.FromString("layer"), up.Listener.Addr())
	var first int32
	for i := range 20 {
		if status := askAsPeer(t, url); status != http.StatusNotFound {
			t.Fatalf("status %d, want 404", status)
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
	srv := coalescingServer(t, named(t, up.Listener.Addr().String()), coalesce.Config{Backoff: 200 * time.Millisecond})
	url := fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, digest.FromString("layer"), up.Listener.Addr())
	get := func() { askAsPeer(t, url) }
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
