package mirror_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
)

// behave replaces node nd's answers for the blob d with how(n, w, r),
// where n counts the requests for it from 1; how returns false to let the
// registry answer.
func behave(nd *node, d digest.Digest, how func(n int32, w http.ResponseWriter, r *http.Request) bool) *atomic.Int32 {
	var hits atomic.Int32
	good := nd.handler
	nd.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, d.Encoded()) && how(hits.Add(1), w, r) {
			return
		}
		good.ServeHTTP(w, r)
	})
	return &hits
}

func broken(w http.ResponseWriter) bool {
	http.Error(w, "broken", http.StatusInternalServerError)
	return true
}

func stalled(r *http.Request) bool {
	<-r.Context().Done()
	return true
}

func TestMirror_UnhealthyProviderTriedLast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []mirror.Option
		// how node 0 (found first) answers its first request; later ones
		// are good.
		first func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"5xx", nil, func(w http.ResponseWriter, _ *http.Request) bool { return broken(w) }},
		{"slow-first-byte", []mirror.Option{mirror.WithSlowPeer(100 * time.Millisecond)}, func(http.ResponseWriter, *http.Request) bool {
			time.Sleep(300 * time.Millisecond)
			return false
		}},
		{"closed-connection", nil, func(http.ResponseWriter, *http.Request) bool { panic(http.ErrAbortHandler) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClusterWith(t, 3, clusterCfg{opts: append([]mirror.Option{mirror.WithHedgeDelay(time.Minute)}, tc.opts...)})
			img := buildImage(t, 64<<10)
			l := img.Largest()
			c.hold(t, 0, img)
			c.hold(t, 1, img)
			hits := behave(c.nodes[0], l.Digest, func(n int32, w http.ResponseWriter, r *http.Request) bool {
				return n == 1 && tc.first(w, r)
			})
			url := c.nodes[2].srv.URL + "/v2/library/app/blobs/" + l.Digest.String()
			for i := range 2 {
				resp, body, err := get(t, url)
				if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
					t.Fatalf("get %d: %v %v", i, err, resp)
				}
			}
			// The second fetch starts with node 1: node 0 is asked once.
			if n := hits.Load(); n != 1 {
				t.Fatalf("the unhealthy provider was asked %d times, want 1 (tried last)", n)
			}
		})
	}
}

func TestMirror_OnlyDeadProvidersAnswer404WithinBudget(t *testing.T) {
	t.Parallel()
	// Both providers fail their first request (5xx), then hang like a
	// dead host whose connections go nowhere. The second lookup returns
	// only them: they are still asked, but within the resolve budget,
	// and the answer is 404 instead of the 5 s a hanging peer costs.
	const budget = 50 * time.Millisecond
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithResolveTimeout(budget)}})
	img := buildImage(t, 64<<10)
	l := img.Largest()
	var hits [2]*atomic.Int32
	for i := range 2 {
		c.hold(t, i, img)
		hits[i] = behave(c.nodes[i], l.Digest, func(n int32, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				return broken(w)
			}
			return stalled(r)
		})
	}
	url := c.nodes[2].srv.URL + "/v2/library/app/blobs/" + l.Digest.String()
	if resp, _, err := get(t, url); err != nil || resp.StatusCode != 404 {
		t.Fatalf("first get: %v %v, want 404", err, resp)
	}
	start := time.Now()
	resp, _, err := get(t, url)
	el := time.Since(start)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("second get: %v %v, want 404", err, resp)
	}
	// The lookup's budget plus the probes' budget, with room for a
	// loaded machine; far below a hanging peer's 5 s.
	if el > 10*budget {
		t.Fatalf("404 took %s with only dead providers; budget %s", el, budget)
	}
	for i, h := range hits {
		if h.Load() != 2 {
			t.Fatalf("provider %d asked %d times, want 2: unhealthy providers are tried last, not skipped", i, h.Load())
		}
	}
}

func TestMirror_UnhealthyProviderServesWhenAlone(t *testing.T) {
	t.Parallel()
	// The only provider failed once; it is tried again (a probe) and,
	// answering in time, serves.
	c := newClusterWith(t, 2, clusterCfg{})
	img := buildImage(t, 64<<10)
	l := img.Largest()
	c.hold(t, 0, img)
	behave(c.nodes[0], l.Digest, func(n int32, w http.ResponseWriter, _ *http.Request) bool { return n == 1 && broken(w) })
	url := c.nodes[1].srv.URL + "/v2/library/app/blobs/" + l.Digest.String()
	if resp, _, err := get(t, url); err != nil || resp.StatusCode != 404 {
		t.Fatalf("first get: %v %v, want 404", err, resp)
	}
	resp, body, err := get(t, url)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("second get: %v %v", err, resp)
	}
}
