package mirror_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/mirror"
)

// TestMirror_RangePastAnHonestEndBlamesNobody: the provider asked first
// claims four times the blob's size, so most chunks of the transfer lie
// past the end of the honest providers' copy: they answer those ranges
// 416 with their true size (bytes */size). That is the same disagreement
// as a range answered with another size (errSizeDisagrees), not ill
// health: an honest provider must not be tried last, for every key, for a
// minute because a liar answered first. (TestMirror_SizeLieBlamesNoHonestProvider
// failed ~1 in 10 on it: whether an honest worker drew the chunk past
// the end was timing.)
func TestMirror_RangePastAnHonestEndBlamesNobody(t *testing.T) {
	t.Parallel()
	const size = 4 * mib
	c := newClusterWith(t, 4, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute),
		mirror.WithSlowPeer(time.Minute), mirror.WithIdleTimeout(time.Minute)}})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	padded := append(bytes.Clone(img.Blobs[l.Digest]), make([]byte, 3*size)...)
	hits := behave(c.nodes[0], l.Digest, func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		serveRange(t, w, r, padded, int64(len(padded)), func(b []byte) { _, _ = w.Write(b) })
		return true
	})
	if resp, _, err := get(t, c.blobURL(3, l.Digest)); err == nil && resp.StatusCode == 200 {
		// The body fails the digest: the transfer is cut, never completed.
		t.Log("headers sent; the body was cut (expected)")
	}
	if hits.Load() == 0 {
		t.Fatal("the liar was never asked; the test tested nothing")
	}
	if got := transfers(c.nodes[3].metrics, "multi"); got != 1 {
		t.Fatalf("multi-peer transfers = %v, want 1 (the honest providers were never asked for ranges)", got)
	}
	m := c.nodes[3].mirror
	for _, nd := range c.nodes[1:3] {
		if m.UnhealthyForTest(nd.id) {
			t.Errorf("honest provider %s is remembered unhealthy after answering a range past its end", nd.id)
		}
	}
	if got := providerEvents(c.nodes[3].metrics, "failed"); got != 0 {
		t.Errorf("provider events failed = %v, want 0 (a range past the end is a size disagreement)", got)
	}
}
