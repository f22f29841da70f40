package mirror_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
)

func TestMirror_MismatchAfterResumeQuarantinesOnlyTheLiar(t *testing.T) {
	t.Parallel()
	for _, liar := range []string{"first", "resume"} {
		t.Run("liar="+liar, func(t *testing.T) {
			t.Parallel()
			// Node 0 is asked first, sends half the layer and dies; the
			// fetch resumes with Range on node 1. One of them lies: node
			// 0 in every answer (liar=first), or node 1 in its ranged
			// answers only (liar=resume). The digest fails; only the liar
			// may be quarantined, so the retry is served by the honest
			// one.
			c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute)}})
			img := buildImage(t, 1<<20)
			c.hold(t, 0, img)
			c.hold(t, 1, img)
			l := img.Largest()
			blob := img.Blobs[l.Digest]
			corrupt := func(b []byte) []byte {
				b = bytes.Clone(b)
				b[len(b)/3] ^= 0xff
				return b
			}
			var died atomic.Bool
			var hits [2]atomic.Int32
			for i := range 2 {
				good := c.nodes[i].handler
				c.nodes[i].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !strings.Contains(r.URL.Path, l.Digest.Encoded()) || r.Method != http.MethodGet {
						good.ServeHTTP(w, r)
						return
					}
					hits[i].Add(1)
					lie := (liar == "first" && i == 0) || (liar == "resume" && i == 1 && r.Header.Get("Range") != "")
					if i == 0 && died.CompareAndSwap(false, true) {
						w.Header().Set("Content-Length", fmt.Sprint(l.Size))
						w.WriteHeader(200)
						half := blob[:l.Size/2]
						if lie {
							half = corrupt(half)
						}
						_, _ = w.Write(half)
						panic(http.ErrAbortHandler)
					}
					if !lie {
						good.ServeHTTP(w, r)
						return
					}
					var off int64
					if rg := r.Header.Get("Range"); rg != "" {
						if _, err := fmt.Sscanf(rg, "bytes=%d-", &off); err != nil {
							t.Errorf("range %q: %v", rg, err)
						}
						w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, l.Size-1, l.Size))
					}
					w.Header().Set("Content-Length", fmt.Sprint(l.Size-off))
					if off > 0 {
						w.WriteHeader(http.StatusPartialContent)
					}
					_, _ = w.Write(corrupt(blob[off:]))
				})
			}
			url := c.nodes[2].srv.URL + "/v2/library/app/blobs/" + l.Digest.String()
			resp, body, err := get(t, url)
			if err == nil && resp.StatusCode == 200 && digest.FromBytes(body) == l.Digest {
				t.Fatal("the first fetch succeeded; the test did not test anything")
			}
			if !died.Load() || hits[1].Load() == 0 {
				t.Fatalf("no resume happened (node 0 died: %v, node 1 asked %d times)", died.Load(), hits[1].Load())
			}
			fails := c.nodes[2].metrics.PeerVerifyFailures
			deadline := time.Now().Add(10 * time.Second)
			for counterValue(fails) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if counterValue(fails) == 0 {
				t.Fatal("the liar was never quarantined")
			}
			resp, body, err = get(t, url)
			if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
				t.Fatalf("retry: %v %v; the honest peer was quarantined too", err, resp)
			}
			if got := counterValue(fails); got != 1 {
				t.Fatalf("%v peers quarantined, want 1 (the liar)", got)
			}
		})
	}
}
