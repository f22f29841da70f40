package mirror_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
)

// TestMirror_TricklingProviderIsReplaced: the provider asked first sends
// the right bytes at a few KiB/s, never pausing long enough for the idle
// timeout. It must not hold the transfer until the transfer budget (tens
// of seconds to an hour for a large blob): its part moves to another
// provider once it delivers too little per idle timeout.
func TestMirror_TricklingProviderIsReplaced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		size     int64
		parallel int
	}{
		{"single-peer", 2 * mib, 1},
		{"multi-peer", 16 * mib, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClusterWith(t, 4, clusterCfg{opts: []mirror.Option{
				mirror.WithHedgeDelay(time.Minute), mirror.WithIdleTimeout(time.Second),
				mirror.WithPeerFetchParallel(tc.parallel),
			}})
			img := buildImage(t, tc.size)
			l := img.Largest()
			for i := range 3 {
				c.hold(t, i, img)
			}
			blob := img.Blobs[l.Digest]
			hits := behave(c.nodes[0], l.Digest, func(_ int32, w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet {
					return false
				}
				rc := http.NewResponseController(w)
				serveRange(t, w, r, blob, int64(len(blob)), func(b []byte) {
					for len(b) > 0 && r.Context().Err() == nil {
						k := min(len(b), 512)
						if _, err := w.Write(b[:k]); err != nil || rc.Flush() != nil {
							return
						}
						b = b[k:]
						time.Sleep(200 * time.Millisecond)
					}
				})
				return true
			})
			// A safety net only: the transfer budget of this blob is far
			// longer, and the trickler would need minutes.
			ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.blobURL(3, l.Digest), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, err = buf.ReadFrom(resp.Body)
			if err != nil || resp.StatusCode != 200 || digest.FromBytes(buf.Bytes()) != l.Digest {
				t.Fatalf("get: %v, status %d, %d of %d bytes: the trickling provider held the transfer", err, resp.StatusCode, buf.Len(), len(blob))
			}
			if hits.Load() == 0 {
				t.Fatal("the trickling provider was never asked; the test tested nothing")
			}
			mt := c.nodes[3].metrics
			if got := providerEvents(mt, "too_slow"); got < 1 {
				t.Errorf("provider events too_slow = %v, want at least 1 (the trickler was cut off)", got)
			}
			if got := providerEvents(mt, "unhealthy"); got < 1 {
				t.Errorf("provider events unhealthy = %v, want at least 1", got)
			}
			if got := collectedValue(mt.UnhealthyProviders); got < 1 {
				t.Errorf("unhealthy providers gauge = %v, want at least 1", got)
			}
			if got := counterValue(mt.PeerRangeRequests); got < 1 {
				t.Errorf("range requests = %v, want at least 1 (the trickler's range asked elsewhere)", got)
			}
			mode, other := "single", "multi"
			if tc.parallel > 1 {
				mode, other = other, mode
			}
			if got, gotOther := transfers(mt, mode), transfers(mt, other); got != 1 || gotOther != 0 {
				t.Errorf("transfers %s = %v, %s = %v; want 1 and 0", mode, got, other, gotOther)
			}
		})
	}
}
