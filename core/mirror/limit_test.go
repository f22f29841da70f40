package mirror_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
)

func TestMirror_FullFetchSemaphoreAnswers404AtOnce(t *testing.T) {
	t.Parallel()
	// One fetch slot. The first blob holds it (its peer stalls until
	// released); the second must get 404 at once, so containerd goes
	// upstream instead of waiting for its own timeout, and be counted.
	c := newClusterWith(t, 2, clusterCfg{opts: []mirror.Option{mirror.WithMaxConcurrent(1)}})
	img := buildImage(t, 64<<10, 32<<10)
	c.hold(t, 0, img)
	var first, second digest.Digest
	for d, mt := range img.Types {
		if strings.Contains(mt, "layer") {
			if first == "" {
				first = d
			} else {
				second = d
			}
		}
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, first.Encoded()) {
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		good.ServeHTTP(w, r)
	})
	base := c.nodes[1].srv.URL + "/v2/library/app/blobs/"
	done := make(chan error, 1)
	go func() {
		resp, body, err := get(t, base+first.String())
		if err == nil && (resp.StatusCode != 200 || digest.FromBytes(body) != first) {
			err = context.Canceled
		}
		done <- err
	}()
	<-entered

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+second.String(), nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("second blob while the slot is taken: %v (after %s); want an immediate 404", err, time.Since(start))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second blob: status %d, want 404", resp.StatusCode)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("404 took %s", el)
	}
	if got := counterValue(c.nodes[1].metrics.PeerFetchRejected); got != 1 {
		t.Fatalf("rejected fetches = %v, want 1", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first blob: %v", err)
	}
}
