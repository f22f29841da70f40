package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
	"github.com/sluice-oci/sluice/policy"
)

func TestSizeFlag_Set(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"10GiB", 10 << 30, false},
		{"512 MiB", 512 << 20, false},
		{"64KiB", 64 << 10, false},
		{"1048576", 1 << 20, false},
		{"7B", 7, false},
		{"", 0, true},
		{"-1GiB", 0, true},
		{"10GB", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var s sizeFlag
			err := s.Set(tt.in)
			if (err != nil) != tt.err || !tt.err && int64(s) != tt.want {
				t.Errorf("Set(%q) = %d, %v; want %d, error %v", tt.in, s, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseRunConfig_Coalesce(t *testing.T) {
	t.Parallel()
	cfg, err := parseRunConfig([]string{"--coalesce", "--coalesce-spool-size", "2GiB", "--coalesce-ttl", "3m", "--coalesce-wildcard"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Coalesce.On || cfg.Coalesce.SpoolSize != 2<<30 || cfg.Coalesce.TTL != 3*time.Minute || !cfg.Coalesce.Wildcard {
		t.Errorf("coalesce flags = %+v", cfg.Coalesce)
	}
	def, err := parseRunConfig(nil, io.Discard)
	if err != nil || !def.Coalesce.On || def.Coalesce.SpoolSize != 10<<30 || def.Coalesce.TTL != 10*time.Minute || def.Coalesce.Wildcard {
		t.Errorf("defaults = %+v, %v (want coalescing on)", def.Coalesce, err)
	}
	off, err := parseRunConfig([]string{"--coalesce=false"}, io.Discard)
	if err != nil || off.Coalesce.On {
		t.Errorf("--coalesce=false = %+v, %v", off.Coalesce, err)
	}
	if _, err := parseRunConfig([]string{"--coalesce-ttl", "0s"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--coalesce-ttl") {
		t.Errorf("a zero TTL: %v", err)
	}
}

// TestStatusPage_CoalescedSource: a request the responsible node answered
// from an upstream fetch for a peer (source "upstream") reads "upstream
// via coalescing" on the status page and in `sluice status`.
func TestStatusPage_CoalescedSource(t *testing.T) {
	t.Parallel()
	log := newRequestLog()
	log.Request(registry.RequestEvent{Start: time.Now(), Method: "GET", Kind: "blob", Peer: &policy.Peer{ID: "12D3KooWRequester"},
		Ref:    oci.Reference{Registry: "docker.io", Repository: "library/nginx", Digest: digest.FromString("layer")},
		Source: "upstream", Status: 200, Sent: 1 << 20,
		Decisions: []registry.DecisionEvent{{Action: policy.ActionServe, Allow: true}, {Action: policy.ActionFetch, Allow: true}}})
	s := testStatusSource(t, log)
	s.pol.SetMirrors([]string{"docker.io"})
	html := httptest.NewRecorder()
	writeStatusHTML(html, httptest.NewRequest("GET", "/", nil), s)
	js := httptest.NewRecorder()
	writeStatus(js, httptest.NewRequest("GET", "/status", nil), s)
	var doc statusDoc
	if err := json.Unmarshal(js.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := writeStatusText(&text, doc); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"html": html.Body.String(), "text": text.String()} {
		if !strings.Contains(out, "upstream via coalescing") {
			t.Errorf("%s: the coalesced source is not shown:\n%s", name, out)
		}
	}
	if len(doc.Requests) != 1 || doc.Requests[0].Source != "upstream" {
		t.Errorf("json requests %+v", doc.Requests)
	}
}

// TestWatchUpstream_NewCredentials: registries.yaml changes at runtime
// (a wrong password fixed); the next coalesced fetch uses the new
// credentials, without a restart. A file that no longer parses keeps them.
func TestWatchUpstream_NewCredentials(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t, upstreamtest.Options{Auth: upstreamtest.AuthToken, Username: "puller", Password: "s3cret"})
	img, err := testimage.Build(testimage.Spec{Name: up.Host + "/e2e/app:1.0", Platforms: []string{"linux/amd64"}, LayerSizes: []int64{64 << 10}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Push(t.Context(), "e2e/app", "1.0", img); err != nil {
		t.Fatal(err)
	}
	regsYAML := func(password string) []byte {
		return fmt.Appendf(nil, "mirrors:\n  %q:\n    endpoint: [\"http://%s\"]\nconfigs:\n  %q:\n    auth:\n      username: puller\n      password: %s\n",
			up.Host, up.Host, up.Host, password)
	}
	path := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(path, regsYAML("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	regs, _, err := config.LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	co, err := coalesce.New(upstream.New(regs), coalesce.Config{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 1 << 20, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(co)))
	t.Cleanup(srv.Close)
	go watchUpstream(t.Context(), path, co, slog.New(slog.DiscardHandler))

	layer := img.Layers[0].Digest
	get := func() int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
			srv.URL+"/v2/e2e/app/blobs/"+layer.String()+"?ns="+up.Host, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(registry.PeerHeader, "node-x")
		req.Header.Set(oci.CoalesceHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode == http.StatusOK && digest.FromBytes(b) != layer {
			t.Fatalf("served %d bytes that are not %s", len(b), layer)
		}
		return resp.StatusCode
	}
	if code := get(); code != http.StatusNotFound {
		t.Fatalf("with the wrong password: %d, want 404", code)
	}
	// The watcher sets its baseline when it starts: wait for it, then fix
	// the password.
	time.Sleep(2 * config.DefaultDebounce)
	if err := os.WriteFile(path, regsYAML("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	code := 0
	for code != http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		code = get()
	}
	if code != http.StatusOK {
		t.Fatalf("after registries.yaml got the right password: %d, want 200", code)
	}
	var tokens int
	for _, q := range up.Counter.Requests() {
		if strings.HasPrefix(q.Path, "/token") && q.Status == http.StatusOK {
			tokens++
		}
	}
	if tokens == 0 {
		t.Errorf("no token was granted: the fetch did not use the new credentials")
	}
}
