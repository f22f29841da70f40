package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
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
	cfg, err := parseRunConfig([]string{"--coalesce", "--coalesce-spool-size", "2GiB", "--coalesce-ttl", "3m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Coalesce.On || cfg.Coalesce.SpoolSize != 2<<30 || cfg.Coalesce.TTL != 3*time.Minute {
		t.Errorf("coalesce flags = %+v", cfg.Coalesce)
	}
	off, err := parseRunConfig(nil, io.Discard)
	if err != nil || off.Coalesce.On || off.Coalesce.SpoolSize != 10<<30 || off.Coalesce.TTL != 10*time.Minute {
		t.Errorf("defaults = %+v, %v", off.Coalesce, err)
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
