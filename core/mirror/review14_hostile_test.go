package mirror_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/oci"
)

// serveRange answers a GET of blob (whole or ranged, as asked) with the
// headers a registry sends, claiming size as the blob's size, and writes
// the body with write.
func serveRange(t *testing.T, w http.ResponseWriter, r *http.Request, blob []byte, size int64, write func([]byte)) {
	rng, partial, err := oci.ParseRange(r.Header.Get("Range"), size)
	if err != nil {
		t.Errorf("range %q: %v", r.Header.Get("Range"), err)
		return
	}
	if !partial {
		rng = oci.ByteRange{Length: size}
	}
	w.Header().Set("Content-Length", fmt.Sprint(rng.Length))
	if partial {
		w.Header().Set("Content-Range", rng.ContentRange(size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	write(blob[rng.Start : rng.Start+rng.Length])
}

// TestMirror_SizeLieBlamesNoHonestProvider: the provider asked first
// claims a larger size than the blob has (and sends that many bytes).
// The other providers answer their ranges with the true size in
// Content-Range. They disagree with the liar, not misbehave: they must not
// be remembered as unhealthy (tried last for a minute, for every key),
// while the liar, whose bytes fail the digest, is quarantined and a retry
// completes from the honest ones.
func TestMirror_SizeLieBlamesNoHonestProvider(t *testing.T) {
	t.Parallel()
	const size = 12 * mib
	// Slowness must not blame anyone here either: under make test's load
	// an honest answer past the slow-peer threshold (or under the trickle
	// floor) was remembered unhealthy for that, not for the size.
	c := newClusterWith(t, 4, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute),
		mirror.WithSlowPeer(time.Minute), mirror.WithIdleTimeout(time.Minute)}})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	blob := img.Blobs[l.Digest]
	padded := append(bytes.Clone(blob), make([]byte, 4*mib)...)
	hits := behave(c.nodes[0], l.Digest, func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		serveRange(t, w, r, padded, int64(len(padded)), func(b []byte) { _, _ = w.Write(b) })
		return true
	})
	url := c.blobURL(3, l.Digest)
	if resp, body, err := get(t, url); err == nil && resp.StatusCode == 200 && digest.FromBytes(body) == l.Digest {
		t.Fatal("the liar's size was served as a complete blob")
	}
	if hits.Load() == 0 {
		t.Fatal("the liar was never asked; the test tested nothing")
	}
	mt := c.nodes[3].metrics
	if got := providerEvents(mt, "size_disagrees"); got < 1 {
		t.Errorf("provider events size_disagrees = %v, want at least 1", got)
	}
	if got := transfers(mt, "multi"); got != 1 {
		t.Errorf("multi-peer transfers = %v, want 1", got)
	}
	m := c.nodes[3].mirror
	for _, nd := range c.nodes[1:3] {
		if m.UnhealthyForTest(nd.id) {
			t.Errorf("honest provider %s is remembered unhealthy after disagreeing with a liar about the size", nd.id)
		}
	}
	fails := c.nodes[3].metrics.PeerVerifyFailures
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(fails) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if counterValue(fails) != 1 {
		t.Fatalf("%v peers quarantined, want 1 (the liar)", counterValue(fails))
	}
	if got, gauge := providerEvents(mt, "quarantined"), collectedValue(mt.QuarantinedPeers); got != 1 || gauge != 1 {
		t.Errorf("provider events quarantined = %v, quarantined peers gauge = %v; want 1 and 1", got, gauge)
	}
	resp, body, err := get(t, url)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("retry: %v %v", err, resp)
	}
}
