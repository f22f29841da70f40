package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
)

// TestServer_PeerBlobRefusedWhenHashSlotsBusy: with every background hash
// slot busy past the grace, a peer asking for another unverified blob gets
// 404 BLOB_UNKNOWN after the grace (its mirror moves to another provider
// or the upstream) and the refusal is counted; a request for the blob
// already being hashed joins that hash and is served; once the slot is
// free the other blob is served too.
func TestServer_PeerBlobRefusedWhenHashSlotsBusy(t *testing.T) {
	t.Parallel()
	img, dir := layoutImage(t, "docker.io/library/busy:1.0", 43, 2<<20, 2<<20+1)
	hashed, other := img.Layers[0], img.Layers[1]
	// 8 reads of 150 ms: the first blob's hash holds the one slot ~1.2 s.
	st := &hashSlowStore{Store: dir, delay: 150 * time.Millisecond}
	m := metrics.New(nil)
	srv := httptest.NewServer(registry.New(st, registry.WithVerifyConcurrency(1), registry.WithMetrics(m)))
	defer srv.Close()
	url := func(d ocispec.Descriptor) string { return srv.URL + "/v2/library/busy/blobs/" + d.Digest.String() }

	// A first request takes the slot and gives up; its hash goes on.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	status, _, _ := peerFetch(ctx, url(hashed))
	cancel()
	if status != http.StatusOK {
		t.Fatalf("first request: status %d, want 200", status)
	}

	start := time.Now()
	status, code, _ := peerFetch(t.Context(), url(other))
	if took := time.Since(start); status != http.StatusNotFound || code != "BLOB_UNKNOWN" || took < registry.VerifyGrace || took > 700*time.Millisecond {
		t.Fatalf("other blob while the slot is busy: status %d code %q after %v, want 404 BLOB_UNKNOWN after the %v grace", status, code, took, registry.VerifyGrace)
	}
	if got := counterValue(m.VerifyRejected); got != 1 {
		t.Fatalf("verify rejections = %v, want 1", got)
	}

	// The blob being hashed: joins the hash, is served whole.
	if status, _, body := peerFetch(t.Context(), url(hashed)); status != http.StatusOK || digest.FromBytes(body) != hashed.Digest {
		t.Fatalf("blob being hashed: status %d, %d bytes; want it served", status, len(body))
	}
	// The slot is free again: the other blob is hashed and served.
	if status, _, body := peerFetch(t.Context(), url(other)); status != http.StatusOK || digest.FromBytes(body) != other.Digest {
		t.Fatalf("other blob after the slot freed: status %d, %d bytes; want it served", status, len(body))
	}
	if got := counterValue(m.VerifyRejected); got != 1 {
		t.Fatalf("verify rejections = %v, want still 1", got)
	}
}

// TestServer_PeerBlobWaitsForAHashSlot: a peer asking for an unverified
// blob while every hash slot is busy waits for a slot within the grace
// instead of being refused: the first pulls of a rollout ask a seeder for
// dozens of small blobs at once, each hashed in microseconds, and a 404
// sends the puller to the upstream (or fails it, air-gapped).
func TestServer_PeerBlobWaitsForAHashSlot(t *testing.T) {
	t.Parallel()
	img, dir := layoutImage(t, "docker.io/library/slot:1.0", 44, 1<<20, 1<<20+1)
	first, second := img.Layers[0], img.Layers[1]
	st := &slotGateStore{Store: dir, gated: first.Digest, gate: make(chan struct{}), opened: make(chan digest.Digest, 16)}
	m := metrics.New(nil)
	srv := httptest.NewServer(registry.New(st, registry.WithVerifyConcurrency(1), registry.WithMetrics(m)))
	defer srv.Close()
	url := func(d ocispec.Descriptor) string { return srv.URL + "/v2/library/slot/blobs/" + d.Digest.String() }

	// The first blob's hash takes the one slot and blocks at the gate.
	firstDone := make(chan int, 1)
	go func() { status, _, _ := peerFetch(t.Context(), url(first)); firstDone <- status }()
	for d := range st.opened {
		if d == first.Digest {
			break
		}
	}
	secondDone := make(chan []byte, 1)
	go func() {
		status, code, body := peerFetch(t.Context(), url(second))
		if status != http.StatusOK {
			t.Errorf("second blob: status %d %s, want 200 once the slot freed", status, code)
		}
		secondDone <- body
	}()
	for d := range st.opened {
		if d == second.Digest {
			break
		}
	}
	close(st.gate) // the slot frees while the second request waits
	if body := <-secondDone; digest.FromBytes(body) != second.Digest {
		t.Fatalf("second blob: %d bytes not matching its digest", len(body))
	}
	if status := <-firstDone; status != http.StatusOK {
		t.Fatalf("first blob: status %d", status)
	}
	if got := counterValue(m.VerifyRejected); got != 0 {
		t.Fatalf("verify rejections = %v, want 0", got)
	}
}

// slotGateStore (a file store, so peers' requests are verified) reports each blob opened and blocks the reads (ReadAt, the
// verification hash) of one blob until gate is closed.
type slotGateStore struct {
	*ocidir.Store
	gated  digest.Digest
	gate   chan struct{}
	opened chan digest.Digest
}

type slotGateContent struct {
	*store.File
	gate chan struct{}
}

func (s *slotGateStore) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	c, err := s.Store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	select {
	case s.opened <- d:
	default:
	}
	if d != s.gated {
		return c, nil
	}
	return slotGateContent{File: c.(*store.File), gate: s.gate}, nil
}

func (c slotGateContent) ReadAt(p []byte, off int64) (int, error) {
	<-c.gate
	return c.File.ReadAt(p, off)
}

// hashSlowStore is an oci-layout store whose blob reads through ReadAt
// (what the verification hash uses) each take delay.
type hashSlowStore struct {
	*ocidir.Store
	delay time.Duration
}

type hashSlowContent struct {
	*store.File
	delay time.Duration
}

func (s *hashSlowStore) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	c, err := s.Store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return hashSlowContent{File: c.(*store.File), delay: s.delay}, nil
}

func (c hashSlowContent) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(c.delay)
	return c.File.ReadAt(p, off)
}

// peerFetch GETs url as a peer: the status, the OCI error code of a
// refusal, and the body.
func peerFetch(ctx context.Context, url string) (int, string, []byte) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set(registry.PeerHeader, "peer-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var oe struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if resp.StatusCode >= 400 && json.Unmarshal(b, &oe) == nil && len(oe.Errors) > 0 {
		return resp.StatusCode, oe.Errors[0].Code, b
	}
	return resp.StatusCode, "", b
}

func counterValue(c prometheus.Metric) float64 {
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		return -1
	}
	return out.GetCounter().GetValue()
}
