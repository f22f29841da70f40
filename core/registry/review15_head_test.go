package registry_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/registry"
)

// TestServer_PeerHeadDoesNotWaitForAHashSlot (review 15): a peer's HEAD
// of an unverified blob sends no bytes and needs no verdict, and HEAD is
// exempt from the peer serve cap (WithMaxPeerServes). So it must not park
// for the verification grace waiting for a hash slot: any number of HEADs
// (anyone can set the peer header) would otherwise each sit on the
// verifyCache's freed channel for 100 ms, all woken by every hash that
// ends. Before a24cabe a HEAD answered at once (404 when every slot was
// busy); since, it waits the whole grace.
func TestServer_PeerHeadDoesNotWaitForAHashSlot(t *testing.T) {
	t.Parallel()
	img, dir := layoutImage(t, "docker.io/library/head:1.0", 1515, 1<<20, 1<<20+1)
	first, second := img.Layers[0], img.Layers[1]
	st := &slotGateStore{Store: dir, gated: first.Digest, gate: make(chan struct{}), opened: make(chan digest.Digest, 16)}
	srv := httptest.NewServer(registry.New(st, registry.WithVerifyConcurrency(1), registry.WithMetrics(metrics.New(nil))))
	defer srv.Close()
	url := func(d ocispec.Descriptor) string { return srv.URL + "/v2/library/head/blobs/" + d.Digest.String() }

	// The first blob's hash takes the one slot and blocks at the gate
	// for the whole test.
	firstDone := make(chan struct{})
	go func() { defer close(firstDone); _, _, _ = peerFetch(t.Context(), url(first)) }()
	defer func() { close(st.gate); <-firstDone }()
	for d := range st.opened {
		if d == first.Digest {
			break
		}
	}

	for i := range 3 { // three tries: one slow scheduling is not a finding
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, url(second), nil)
		req.Header.Set(registry.PeerHeader, "peer-1")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took < registry.VerifyGrace {
			return
		}
		t.Logf("HEAD %d: status %d after %v", i, resp.StatusCode, took)
	}
	t.Fatalf("a peer's HEAD of an unverified blob waited the %v grace for a hash slot it does not need", registry.VerifyGrace)
}
