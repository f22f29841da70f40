package mirror_test

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
)

// TestMirror_MultiPeerMemoryBounded: several multi-peer transfers whose
// clients stop reading each fill their window of chunk buffers. Together
// they hold no more than the node-wide bound (here 8 chunks: one full
// window of 5 and one of 3); the transfers that find no room fetch from
// one provider at a time, and every client gets the right bytes.
//
// Not parallel: four 48 MiB transfers under -race load the machine enough
// to disturb the paced multi-peer tests, which run after it.
func TestMirror_MultiPeerMemoryBounded(t *testing.T) {
	const size, clients, budget = 48 * mib, 4, 8
	c := newClusterWith(t, 4, clusterCfg{opts: []mirror.Option{
		mirror.WithHedgeDelay(time.Minute), mirror.WithMultiPeerMemory(budget * 4 * mib),
	}})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	m := c.nodes[3].mirror
	var resps []*http.Response
	for range clients {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.blobURL(3, l.Digest), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("get: %v %v", err, resp)
		}
		defer resp.Body.Close()
		resps = append(resps, resp)
	}
	// The clients read nothing: the transfers fill their windows until
	// the bound is reached (or, unbounded, past it).
	deadline := time.Now().Add(20 * time.Second) // a safety net
	for {
		inUse, peak := m.RangeBuffersForTest()
		if peak > budget {
			t.Fatalf("%d chunk buffers held at once by stalled transfers (now %d), bound %d", peak, inUse, budget)
		}
		if inUse == budget {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunk buffers held, want the bound %d reached: the test tested nothing", inUse, budget)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for i, resp := range resps {
		wg.Go(func() {
			var b bytes.Buffer
			if _, err := b.ReadFrom(resp.Body); err != nil || digest.FromBytes(b.Bytes()) != l.Digest {
				t.Errorf("client %d: %v, %d bytes, digest match %v", i, err, b.Len(), digest.FromBytes(b.Bytes()) == l.Digest)
			}
		})
	}
	wg.Wait()
	if _, peak := m.RangeBuffersForTest(); peak > budget {
		t.Fatalf("%d chunk buffers held at once, bound %d", peak, budget)
	}
	mt := c.nodes[3].metrics
	falls, multi, single := counterValue(mt.MultiPeerMemoryFalls), transfers(mt, "multi"), transfers(mt, "single")
	if falls < 1 || multi > 2 || multi+single != clients || single < falls {
		t.Fatalf("memory fallbacks %v, transfers multi %v single %v; want at least 1 fallback (counted single), at most 2 multi (windows of 5 and 3 fill the bound of 8), %d in all",
			falls, multi, single, clients)
	}
}
