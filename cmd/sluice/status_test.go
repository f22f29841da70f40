package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/policy"
)

// TestWriteStatus_HidesWhatPolicyHides: the shipped policy never
// advertises :latest, so the status page must not name such an image.
func TestWriteStatus_HidesWhatPolicyHides(t *testing.T) {
	t.Parallel()
	st := memory.New()
	for _, name := range []string{"docker.io/library/nginx:1.27", "docker.io/internal/secret:latest"} {
		cfg := st.Add(ocispec.MediaTypeImageConfig, []byte(`{"name":"`+name+`"}`))
		m, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}})
		if err := st.Tag(name, st.Add(ocispec.MediaTypeImageManifest, m)); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pol.Close() })
	router, err := routing.NewP2P(t.Context(), routing.P2PConfig{ListenAddr: "127.0.0.1:0", RegistryPort: 5000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Close() })
	adv := routing.NewAdvertiser(router, st, routing.WithPolicy(pol))
	go func() { _ = adv.Run(t.Context()) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(adv.SharedImages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	rec := httptest.NewRecorder()
	writeStatus(rec, httptest.NewRequest("GET", "/status", nil), &statusSource{router: router, adv: adv, pol: pol, st: st, page: newStatusPage()})
	body, _ := io.ReadAll(rec.Body)
	if strings.Contains(string(body), "secret") {
		t.Errorf("status names an image the advertise policy hides:\n%s", body)
	}
	var doc struct {
		Images     []string `json:"images"`
		ImageCount int      `json:"image_count"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(doc.Images, []string{"docker.io/library/nginx:1.27"}) || doc.ImageCount != 2 {
		t.Errorf("images %v, image_count %d; want [docker.io/library/nginx:1.27] and 2", doc.Images, doc.ImageCount)
	}
}

func TestRunFlags_MetricsAddrDefaultsToLoopback(t *testing.T) {
	t.Parallel()
	cfg, err := parseRunConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !isLoopbackAddr(cfg.MetricsAddr) {
		t.Errorf("--metrics-addr defaults to %q, want a loopback address", cfg.MetricsAddr)
	}
}

// TestWriteStatus_ImagesBounded: a node sharing more images than
// maxStatusImages lists that many by name and counts the rest, so the page
// stays bounded on a node with thousands of images.
func TestWriteStatus_ImagesBounded(t *testing.T) {
	t.Parallel()
	const n = maxStatusImages + 37
	st := memory.New()
	for i := range n {
		name := fmt.Sprintf("docker.io/library/app%04d:1.0", i)
		cfg := st.Add(ocispec.MediaTypeImageConfig, []byte(`{"name":"`+name+`"}`))
		m, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}})
		if err := st.Tag(name, st.Add(ocispec.MediaTypeImageManifest, m)); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pol.Close() })
	router, err := routing.NewP2P(t.Context(), routing.P2PConfig{ListenAddr: "127.0.0.1:0", RegistryPort: 5000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Close() })
	adv := routing.NewAdvertiser(router, st, routing.WithPolicy(pol))
	go func() { _ = adv.Run(t.Context()) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(adv.SharedImages()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(adv.SharedImages()); got != n {
		t.Fatalf("advertiser shares %d images, want %d", got, n)
	}
	ss := &statusSource{router: router, adv: adv, pol: pol, st: st, page: newStatusPage()}
	d := ss.doc(t.Context())
	if len(d.Images) != maxStatusImages || d.ImagesOmitted != n-maxStatusImages {
		t.Fatalf("status lists %d images, omits %d; want %d and %d", len(d.Images), d.ImagesOmitted, maxStatusImages, n-maxStatusImages)
	}
	rec := httptest.NewRecorder()
	writeStatusHTML(rec, httptest.NewRequest("GET", "/", nil), ss)
	if body := rec.Body.String(); !strings.Contains(body, fmt.Sprintf("and %d more", n-maxStatusImages)) {
		t.Errorf("page does not say how many images it omits")
	}
}
