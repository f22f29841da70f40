package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/policy"
)

// labelledStore is the memory store with containerd image labels, which
// the memory store does not keep.
type labelledStore struct {
	*memory.Store
	labels map[string]map[string]string // by image name
}

func (s labelledStore) Images(ctx context.Context) ([]store.Image, error) {
	imgs, err := s.Store.Images(ctx)
	for i := range imgs {
		imgs[i].Labels = s.labels[imgs[i].Name]
	}
	return imgs, err
}

// TestStatusPage_HidesByImageSource: an advertise policy that judges the
// image the store holds (its labels) hides its name from the status page
// too, for the tag request and for the blob requests of its repository:
// the page must ask the policy about the image as the advertiser does, not
// about a source made up from the request path.
func TestStatusPage_HidesByImageSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rego := `package sluice.advertise

default allow := false

allow if not private

private if input.source.labels["example.com/private"] == "true"
`
	if err := os.WriteFile(filepath.Join(dir, "advertise.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(t.Context(), []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pol.Close() })

	mem := memory.New()
	add := func(name, content string) digest.Digest {
		layer := mem.Add("application/vnd.oci.image.layer.v1.tar", []byte(content))
		cfg := mem.Add(ocispec.MediaTypeImageConfig, []byte(`{"c":"`+content+`"}`))
		m := `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","config":{"mediaType":"` + cfg.MediaType +
			`","digest":"` + cfg.Digest.String() + `","size":` + itoa(cfg.Size) + `},"layers":[{"mediaType":"` + layer.MediaType +
			`","digest":"` + layer.Digest.String() + `","size":` + itoa(layer.Size) + `}]}`
		if err := mem.Tag(name, mem.Add(ocispec.MediaTypeImageManifest, []byte(m))); err != nil {
			t.Fatal(err)
		}
		return layer.Digest
	}
	secretLayer := add("docker.io/corp/payroll:v1", "payroll layer")
	publicLayer := add("docker.io/library/nginx:1.27", "nginx layer")
	st := labelledStore{Store: mem, labels: map[string]map[string]string{"docker.io/corp/payroll:v1": {"example.com/private": "true"}}}

	log := newRequestLog()
	for _, ref := range []oci.Reference{
		{Registry: "docker.io", Repository: "corp/payroll", Tag: "v1"},
		{Registry: "docker.io", Repository: "corp/payroll", Digest: secretLayer},
		{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27"},
		{Registry: "docker.io", Repository: "library/nginx", Digest: publicLayer},
	} {
		kind := "blob"
		if ref.Tag != "" {
			kind = "manifest"
		}
		log.Request(registry.RequestEvent{Start: time.Now(), Method: "GET", Kind: kind, Ref: ref, Source: "local", Status: 200})
	}
	s := testStatusSource(t, log)
	s.pol, s.st = pol, st

	html := httptest.NewRecorder()
	writeStatusHTML(html, httptest.NewRequest("GET", "/", nil), s)
	js := httptest.NewRecorder()
	writeStatus(js, httptest.NewRequest("GET", "/status", nil), s)
	for name, out := range map[string]string{"html": html.Body.String(), "json": js.Body.String()} {
		if strings.Contains(out, "payroll") {
			t.Errorf("%s names docker.io/corp/payroll, which the advertise policy hides by its label", name)
		}
		for _, want := range []string{"docker.io/library/nginx:1.27", "docker.io/library/nginx@" + publicLayer.String(), secretLayer.String()} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q missing", name, want)
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
