package mirror_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// lastHolderUnhealthy sets up a resume whose only provider left is
// remembered unhealthy: nodes 0 and 1 hold a 4 MiB layer; node 1 has
// failed a blob only it holds; node 0, asked first by node 2, sends half
// the layer and dies (diedAt). The caller decides how node 1 answers.
func lastHolderUnhealthy(t *testing.T) (c *cluster, img *testimage.Image, l ocispec.Descriptor, died *atomic.Bool, diedAt chan time.Time) {
	t.Helper()
	const budget = 50 * time.Millisecond
	c = newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithResolveTimeout(budget), mirror.WithHedgeDelay(time.Minute)}})
	img = buildImage(t, 4<<20)
	l = img.Largest()
	c.hold(t, 0, img)
	c.hold(t, 1, img)

	other, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{64 << 10}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	c.hold(t, 1, other)
	ol := other.Largest()
	behave(c.nodes[1], ol.Digest, func(n int32, w http.ResponseWriter, _ *http.Request) bool { return n == 1 && broken(w) })
	if resp, _, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+ol.Digest.String()); err != nil || resp.StatusCode == 200 {
		t.Fatalf("the failing provider's blob: %v %v, want an error status", err, resp)
	}

	died, diedAt = &atomic.Bool{}, make(chan time.Time, 1)
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, l.Digest.Encoded()) && died.CompareAndSwap(false, true) {
			w.Header().Set("Content-Length", fmt.Sprint(l.Size))
			w.WriteHeader(200)
			_, _ = w.Write(img.Blobs[l.Digest][:l.Size/2])
			diedAt <- time.Now()
			panic(http.ErrAbortHandler)
		}
		good.ServeHTTP(w, r)
	})
	return c, img, l, died, diedAt
}

// TestMirror_ResumeWaitsForAnUnhealthyProvider: a provider dies mid-blob
// and the only one left is remembered unhealthy and slow to answer (a
// node under load, 200 ms). Before the client has headers an unhealthy
// provider gets the resolve budget (a 404 sends containerd upstream);
// mid-blob it gets the slow-peer threshold, and the transfer completes
// instead of being cut.
func TestMirror_ResumeWaitsForAnUnhealthyProvider(t *testing.T) {
	t.Parallel()
	c, _, l, died, _ := lastHolderUnhealthy(t)
	var ranged atomic.Int32
	behave(c.nodes[1], l.Digest, func(_ int32, _ http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	resp, body, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("get: %v %v", err, resp)
	}
	if !died.Load() {
		t.Fatal("node 0 was not asked first; the test did not test anything")
	}
	if digest.FromBytes(body) != l.Digest {
		t.Fatalf("%d bytes not matching the digest: the transfer was cut when the healthy provider died", len(body))
	}
	if ranged.Load() == 0 {
		t.Fatal("the unhealthy provider was never asked for the rest")
	}
}

// TestMirror_ResumeToADeadUnhealthyProviderIsBounded (review 15): the
// same, but the unhealthy provider is really dead (its records outlive it
// on the DHT): it accepts and never answers. The client must not stall
// for the 5 s response timeout: containerd 2.x reopens a cut body at the
// offset through its hosts list (sluice, then the upstream), so a cut
// within the slow-peer threshold costs a reconnect.
func TestMirror_ResumeToADeadUnhealthyProviderIsBounded(t *testing.T) {
	t.Parallel()
	c, _, l, died, diedAt := lastHolderUnhealthy(t)
	behave(c.nodes[1], l.Digest, func(_ int32, _ http.ResponseWriter, r *http.Request) bool { return stalled(r) })
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("get: %v %v", err, resp)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cut := time.Now()
	if !died.Load() {
		t.Fatal("node 0 was not asked first; the test did not test anything")
	}
	if err == nil {
		t.Fatalf("%d bytes, no error: the dead provider answered?", n)
	}
	stall := cut.Sub(<-diedAt)
	t.Logf("client got %d of %d bytes, then a cut %v after the provider died (%v)", n, l.Size, stall.Round(time.Millisecond), err)
	if limit := 2 * time.Second; stall > limit {
		t.Fatalf("the client stalled %v on a resume whose only provider left is unhealthy and dead; want the cut within %v", stall.Round(time.Millisecond), limit)
	}
}
