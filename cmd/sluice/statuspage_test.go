package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/policy"
)

func testStatusSource(t *testing.T, log *requestLog) *statusSource {
	t.Helper()
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
	st := memory.New()
	return &statusSource{name: "node-7", registryAddr: "127.0.0.1:5000", started: time.Now(), router: router,
		adv: routing.NewAdvertiser(router, st, routing.WithPolicy(pol)), pol: pol, st: st, log: log, page: newStatusPage()}
}

// TestStatusPage_RequestLog: the page shows each request with where it was
// served from (the serving peer) and the policy decisions, in HTML, JSON
// and text alike; a request whose name the advertise policy hides (the
// shipped policy never advertises :latest, nor a registry not mirrored)
// shows kind and digest only, and its reasons (which may quote the name)
// are hidden too.
func TestStatusPage_RequestLog(t *testing.T) {
	t.Parallel()
	log := newRequestLog()
	secretDigest := digest.FromString("secret manifest")
	log.Request(registry.RequestEvent{Start: time.Now(), Duration: 3 * time.Millisecond, Method: "GET", Kind: "manifest",
		Ref:    oci.Reference{Registry: "docker.io", Repository: "internal/secret", Tag: "latest"},
		Source: "none", Status: 404,
		Decisions: []registry.DecisionEvent{{Action: policy.ActionResolve, Allow: false, Reasons: []string{"docker.io/internal/secret:latest is latest"}}}})
	log.Request(registry.RequestEvent{Start: time.Now(), Method: "GET", Kind: "blob",
		Ref:    oci.Reference{Registry: "private.example", Repository: "internal/secret", Digest: secretDigest},
		Source: "none", Status: 404,
		Decisions: []registry.DecisionEvent{{Action: policy.ActionResolve, Allow: false, Reasons: []string{"private.example/internal/secret is not mirrored"}}}})
	layer := digest.FromString("layer")
	log.Request(registry.RequestEvent{Start: time.Now(), Duration: 40 * time.Millisecond, Method: "GET", Kind: "blob",
		Ref:    oci.Reference{Registry: "docker.io", Repository: "library/nginx", Digest: layer},
		Source: "peer", Status: 200, Sent: 4 << 20, From: []registry.PeerBytes{{Peer: "12D3KooWServingPeer", Bytes: 4 << 20}},
		Decisions: []registry.DecisionEvent{{Action: policy.ActionResolve, Allow: true, Reasons: []string{"mirrored registry"}}}})
	log.Request(registry.RequestEvent{Start: time.Now(), Method: "GET", Kind: "blob", Peer: &policy.Peer{ID: "12D3KooWAsker", Address: "127.0.0.9:1"},
		Ref:    oci.Reference{Registry: "docker.io", Repository: "library/nginx", Digest: layer},
		Source: "local", Status: 200, Sent: 1 << 20,
		Decisions: []registry.DecisionEvent{{Action: policy.ActionServe, Allow: true}}})
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
	for name, out := range map[string]string{"html": html.Body.String(), "json": js.Body.String(), "text": text.String()} {
		for _, want := range []string{"docker.io/library/nginx@" + layer.String(), "12D3KooWServingPeer", "12D3KooWAsker",
			"mirrored registry", secretDigest.String(), hiddenReasons, "node-7"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q missing", name, want)
			}
		}
		if strings.Contains(out, "internal/secret") || strings.Contains(out, "private.example") {
			t.Errorf("%s names what the advertise policy hides:\n%s", name, out)
		}
	}
	for _, want := range []string{"resolve: allow", "resolve: deny", "serve: allow", "4.0 MiB", "not found", "local store"} {
		if !strings.Contains(html.Body.String(), want) || !strings.Contains(text.String(), want) {
			t.Errorf("html or text: %q missing", want)
		}
	}
	if ct := html.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if len(doc.Requests) != 4 || doc.Requests[0].From != "12D3KooWAsker" || !doc.Requests[3].Hidden || doc.Requests[3].Name != "" ||
		!doc.Requests[2].Hidden || doc.Requests[2].Digest != secretDigest.String() {
		t.Errorf("requests (newest first) %+v", doc.Requests)
	}
	if doc.Unattributed == nil || len(doc.Unattributed) != 2 {
		t.Errorf("traffic of peers not in the table: %+v", doc.Unattributed)
	}
	nf := httptest.NewRecorder()
	writeStatusHTML(nf, httptest.NewRequest("GET", "/nope", nil), s)
	if nf.Code != 404 {
		t.Errorf("GET /nope: %d", nf.Code)
	}
}

// TestRequestLog_Bounded: the ring keeps the newest requestLogSize
// requests and the traffic table at most maxPeerTraffic peers.
func TestRequestLog_Bounded(t *testing.T) {
	t.Parallel()
	l := newRequestLog()
	start := time.Now()
	n := requestLogSize + maxPeerTraffic + 7
	for i := range n {
		l.Request(registry.RequestEvent{Start: start.Add(time.Duration(i) * time.Millisecond), Method: "GET",
			Peer: &policy.Peer{ID: fmt.Sprint("peer-", i)}, Sent: int64(i)})
	}
	evs, total := l.recent()
	if total != int64(n) || len(evs) != requestLogSize {
		t.Fatalf("kept %d of %d; want %d of %d", len(evs), total, requestLogSize, n)
	}
	for i, ev := range evs {
		if want := int64(n - 1 - i); ev.Sent != want {
			t.Fatalf("entry %d is request %d, want %d (newest first)", i, ev.Sent, want)
		}
	}
	peers := l.peers()
	if len(peers) != maxPeerTraffic {
		t.Fatalf("%d peers kept, want %d", len(peers), maxPeerTraffic)
	}
	if _, ok := peers[fmt.Sprint("peer-", n-1)]; !ok {
		t.Error("newest peer evicted")
	}
	if _, ok := peers["peer-0"]; ok {
		t.Error("oldest peer kept")
	}
}

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestStatusCmd_Text: sluice status prints a running node's page as text,
// and refuses what is not a status document.
func TestStatusCmd_Text(t *testing.T) {
	t.Parallel()
	s := testStatusSource(t, newRequestLog())
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeStatus(w, r, s) }))
	t.Cleanup(node.Close)
	var out bytes.Buffer
	if err := statusCmd(t.Context(), []string{"--metrics-addr", node.URL}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node-7", s.router.ID().String(), "PEERS (0)", "REQUESTS (0 of 0)", "decision cache  on"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"x":1}`) }))
	t.Cleanup(other.Close)
	if err := statusCmd(t.Context(), []string{"--metrics-addr", other.URL}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "not a sluice status document") {
		t.Errorf("err %v", err)
	}
}
