package mirror_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestMirror_ResumeToADeadUnhealthyProviderIsBounded (review 15): a
// provider dies mid-blob and the only one left is remembered unhealthy
// and is really dead (its records outlive it on the DHT): it never answers
// (here it accepts and hangs; a blackholed pod IP costs the 2 s dial
// timeout instead). Since b8c1105 the resume gives it the full 5 s
// response header timeout, and the client gets no byte meanwhile; the
// relooks may hand out more dead records, 5 s each round. The premise
// ("no 404 can send it upstream any more") does not hold for containerd
// 2.x: a body cut with io.ErrUnexpectedEOF is reopened by its
// httpReadSeeker at the offset through the hosts list (sluice, then the
// upstream), so a quick cut costs nothing but a reconnect. An unhealthy
// provider on a resume should get a bounded budget (e.g. the slow-answer
// threshold, 1 s by default: the 200 ms answer of
// TestMirror_ResumeWaitsForAnUnhealthyProvider still fits), not the
// response timeout.
func TestMirror_ResumeToADeadUnhealthyProviderIsBounded(t *testing.T) {
	t.Parallel()
	const budget = 50 * time.Millisecond
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithResolveTimeout(budget), mirror.WithHedgeDelay(time.Minute)}})
	img := buildImage(t, 4<<20)
	l := img.Largest()
	c.hold(t, 0, img)
	c.hold(t, 1, img)

	// Node 1 becomes unhealthy: it fails a blob only it holds.
	other, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{64 << 10}, Seed: 1515})
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
	// is dead: it never answers.
	var died atomic.Bool
	diedAt := make(chan time.Time, 1)
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
		t.Fatalf("the client stalled %v, with no byte, on a resume whose only provider left is unhealthy and dead; want the cut within %v (containerd reopens at the offset, the upstream included)", stall.Round(time.Millisecond), limit)
	}
}
