package mirror_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/registry"
)

// TestMirror_BusyProviderTriedLastNotQuarantined: the first provider of a
// blob is a real registry at its --max-peer-serves cap (one slot, held by
// another peer's transfer), so it answers 503 UNAVAILABLE. The puller asks
// the next provider at once (the hedge delay is a minute: only the 503
// moves it on), completes with the right digest, and holds the busy
// provider unhealthy (tried last) without quarantining it or counting a
// verification failure.
func TestMirror_BusyProviderTriedLastNotQuarantined(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute)}})
	busy := c.nodes[0]
	busy.handler = registry.New(busy.store, registry.WithMirror(busy.mirror), registry.WithMetrics(busy.metrics),
		registry.WithMaxPeerServes(1))
	// 24 MiB: more than loopback buffers take, so the hog's transfer
	// holds the slot until its body is closed; and large enough for a
	// multi-peer transfer, whose ranges meet the 503 too.
	img := buildImage(t, 24<<20)
	c.hold(t, 0, img) // node 0 first: the lookup hands it out first
	c.hold(t, 1, img)
	l := img.Largest()

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.blobURL(0, l.Digest), nil)
	req.Header.Set(registry.PeerHeader, "hog")
	hog, err := http.DefaultClient.Do(req)
	if err != nil || hog.StatusCode != http.StatusOK {
		t.Fatalf("hog: %v %v", err, hog)
	}
	defer hog.Body.Close() // unread until then: the slot stays taken

	start := time.Now()
	resp, body, err := get(t, c.blobURL(2, l.Digest))
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(body) != l.Digest {
		t.Fatalf("pull with the first provider busy: %v %v, %d bytes", err, resp, len(body))
	}
	if took > 10*time.Second {
		t.Errorf("pull took %v: the busy answer did not move the puller on at once", took)
	}
	if got := counterValue(busy.metrics.PeerRefused.WithLabelValues("busy")); got < 1 {
		t.Fatalf("the busy provider refused %v requests; the test did not test a busy provider", got)
	}
	puller := c.nodes[2]
	if got := counterValue(puller.metrics.PeerVerifyFailures); got != 0 {
		t.Errorf("%v verification failures, want 0", got)
	}
	if got := collectedValue(puller.metrics.QuarantinedPeers); got != 0 {
		t.Errorf("%v peers quarantined; a busy provider sent no wrong bytes", got)
	}
	if !puller.mirror.UnhealthyForTest(busy.id) {
		t.Error("the busy provider is not remembered unhealthy: it would be asked first again")
	}
	if puller.mirror.UnhealthyForTest(c.nodes[1].id) {
		t.Error("the provider that served is remembered unhealthy")
	}
}
