package mirror_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestMirror_ResumeWaitsForAnUnhealthyProvider: a provider dies mid-blob
// and the only one left is remembered unhealthy and slow to answer (a
// node under load). Before the client has headers, an unhealthy provider
// gets the resolve budget (a 404 sends containerd upstream); mid-blob
// there is no upstream to go to, so it gets the full response timeout
// and the transfer completes instead of being cut.
func TestMirror_ResumeWaitsForAnUnhealthyProvider(t *testing.T) {
	t.Parallel()
	const budget = 50 * time.Millisecond
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithResolveTimeout(budget), mirror.WithHedgeDelay(time.Minute)}})
	img := buildImage(t, 4<<20)
	l := img.Largest()
	c.hold(t, 0, img)
	c.hold(t, 1, img)

	// Node 1 becomes unhealthy: it fails a blob only it holds.
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

	// Node 0 (healthy, asked first) sends half the layer and dies; node 1
	// answers the resume after 4 budgets.
	var died atomic.Bool
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, l.Digest.Encoded()) && died.CompareAndSwap(false, true) {
			w.Header().Set("Content-Length", fmt.Sprint(l.Size))
			w.WriteHeader(200)
			_, _ = w.Write(img.Blobs[l.Digest][:l.Size/2])
			panic(http.ErrAbortHandler)
		}
		good.ServeHTTP(w, r)
	})
	var ranged atomic.Int32
	behave(c.nodes[1], l.Digest, func(_ int32, _ http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		time.Sleep(4 * budget)
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
