package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestServer_MaxPeerServes: with a cap of 2, two peer GETs of a blob
// whose transfer is held open take both slots; a third peer GET is
// answered 503 UNAVAILABLE with Retry-After at once, without its blob
// being opened, and counted; HEAD, manifests and the local client are
// still answered; once the transfers end, the slots are free again.
func TestServer_MaxPeerServes(t *testing.T) {
	t.Parallel()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/seed:1.0", LayerSizes: []int64{64 << 10}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.New()
	if err := img.AddTo(mem, "docker.io"); err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	st := &gatedStore{Store: mem, slow: layer.Digest, gate: make(chan struct{}), reading: make(chan struct{}, 8)}
	m := metrics.New(nil)
	srv := httptest.NewServer(registry.New(st, registry.WithMaxPeerServes(2), registry.WithMetrics(m)))
	defer srv.Close()
	var release sync.Once
	open := func() { release.Do(func() { close(st.gate) }) }
	defer open() // before srv.Close, which waits for the held transfers
	blobURL := srv.URL + "/v2/library/seed/blobs/" + layer.Digest.String()

	type result struct {
		status int
		body   []byte
	}
	results := make(chan result, 3)
	var wg sync.WaitGroup
	fetch := func(peer string) {
		wg.Go(func() {
			status, _, body := request(t.Context(), http.MethodGet, blobURL, peer)
			results <- result{status, body}
		})
	}
	// Two peers: each transfer starts reading the blob and waits at the gate.
	for _, peer := range []string{"peer-1", "peer-2"} {
		fetch(peer)
		waitReading(t, st)
	}

	opens := st.opens.Load()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	status, hdr, body := request(ctx, http.MethodGet, blobURL, "peer-3")
	cancel()
	if took := time.Since(start); status != http.StatusServiceUnavailable || took > time.Second {
		t.Fatalf("third peer GET while two transfers run: status %d after %v, want 503 at once", status, took)
	}
	if code := ociCode(body); code != "UNAVAILABLE" {
		t.Errorf("busy body %q: code %q, want UNAVAILABLE", body, code)
	}
	if ra := hdr.Get("Retry-After"); ra == "" {
		t.Error("busy answer has no Retry-After")
	}
	if hdr.Get("Content-Type") != "application/json" {
		t.Errorf("busy answer Content-Type %q, want application/json", hdr.Get("Content-Type"))
	}
	if got := counterValue(m.PeerRefused.WithLabelValues("busy")); got != 1 {
		t.Errorf("sluice_registry_peer_refused_total{reason=busy} = %v, want 1", got)
	}
	if n := st.opens.Load() - opens; n != 0 {
		t.Errorf("the refused request opened the blob (%d opens)", n)
	}

	// Cheap requests are not counted: HEAD and manifests still answer.
	if status, _, _ := request(t.Context(), http.MethodHead, blobURL, "peer-3"); status != http.StatusOK {
		t.Errorf("peer HEAD while full: %d, want 200", status)
	}
	if status, _, _ := request(t.Context(), http.MethodGet, srv.URL+"/v2/library/seed/manifests/1.0", "peer-3"); status != http.StatusOK {
		t.Errorf("peer manifest GET while full: %d, want 200", status)
	}

	// The local client is never refused: its GET reads the blob too.
	fetch("")
	waitReading(t, st)

	open()
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusOK || digest.FromBytes(r.body) != layer.Digest {
			t.Errorf("held transfer: status %d, %d bytes; want 200 with the blob", r.status, len(r.body))
		}
	}
	// The slots came back.
	for _, peer := range []string{"peer-3", "peer-4"} {
		if status, _, body := request(t.Context(), http.MethodGet, blobURL, peer); status != http.StatusOK || digest.FromBytes(body) != layer.Digest {
			t.Errorf("%s after the transfers ended: status %d, want 200 with the blob", peer, status)
		}
	}
	if got := counterValue(m.PeerRefused.WithLabelValues("busy")); got != 1 {
		t.Errorf("sluice_registry_peer_refused_total{reason=busy} = %v, want still 1", got)
	}
}

// gatedStore holds reads of one blob until gate is closed; each opened
// content of it reports its first read on reading, and opens counts the
// opens.
type gatedStore struct {
	store.Store
	slow    digest.Digest
	gate    chan struct{}
	reading chan struct{}
	opens   atomic.Int32
}

func (s *gatedStore) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	c, err := s.Store.Open(ctx, d)
	if err != nil || d != s.slow {
		return c, err
	}
	s.opens.Add(1)
	return &gatedContent{Content: c, s: s}, nil
}

type gatedContent struct {
	store.Content
	s    *gatedStore
	once sync.Once
}

func (c *gatedContent) ReadAt(p []byte, off int64) (int, error) {
	c.once.Do(func() { c.s.reading <- struct{}{} })
	<-c.s.gate
	return c.Content.ReadAt(p, off)
}

func waitReading(t *testing.T, st *gatedStore) {
	t.Helper()
	select {
	case <-st.reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never started reading the blob")
	}
}

// request sends method to url, as peer (the local client when ""), and
// returns the status, headers and body.
func request(ctx context.Context, method, url, peer string) (int, http.Header, []byte) {
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	if peer != "" {
		req.Header.Set(registry.PeerHeader, peer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func ociCode(b []byte) string {
	var oe struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(b, &oe) != nil || len(oe.Errors) == 0 {
		return ""
	}
	return oe.Errors[0].Code
}
