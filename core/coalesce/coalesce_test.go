package coalesce_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
	"github.com/sluice-oci/sluice/policy"
)

const repo = "library/app"

// announcer records what the coalescer announced and withdrew.
type announcer struct {
	mu                  sync.Mutex
	advertised, removed []string
}

func (a *announcer) Advertise(_ context.Context, keys []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advertised = append(a.advertised, keys...)
	return nil
}

func (a *announcer) Withdraw(_ context.Context, keys []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removed = append(a.removed, keys...)
	return nil
}

func (a *announcer) has(withdrawn bool, key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if withdrawn {
		return slices.Contains(a.removed, key)
	}
	return slices.Contains(a.advertised, key)
}

type node struct {
	c     *coalesce.Coalescer
	url   string
	up    *upstreamtest.Registry
	img   *testimage.Image
	ann   *announcer
	spool string
}

// newNode runs a registry with an empty store whose peers are answered by
// a coalescer fetching from a real upstream registry holding a test image
// (one 16 MiB layer and one small), under the shipped policies with mirrors
// set to mirrors (nil: every registry); opts are added to the coalescer's.
func newNode(t *testing.T, cfg coalesce.Config, mirrors []string, data string, opts ...coalesce.Option) *node {
	t.Helper()
	up := upstreamtest.Start(t, upstreamtest.Options{})
	img, err := testimage.Build(testimage.Spec{Name: "example.com/" + repo + ":1", LayerSizes: []int64{16 << 20, 4 << 10}, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Push(t.Context(), repo, "1.0", img); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join("..", "..", "policies")}
	if data != "" {
		name := "settings.json"
		if strings.HasPrefix(data, "package ") {
			name = "dropin.rego"
		}
		f := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, f)
	}
	pol, err := policy.Load(t.Context(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if mirrors == nil {
		mirrors = []string{"*"}
	}
	pol.SetMirrors(mirrors)
	cfg = testSpool(t, cfg, 64<<20)
	if cfg.FirstByte == 0 {
		cfg.FirstByte = 30 * time.Second // -race on a loaded 2-core box
	}
	ann := &announcer{}
	opts = append([]coalesce.Option{coalesce.WithPolicy(pol), coalesce.WithAnnouncer(ann),
		coalesce.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)
	c, err := coalesce.New(upstream.New(named(t, up.Host)), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithPolicy(pol), registry.WithCoalescer(c)))
	t.Cleanup(srv.Close)
	return &node{c: c, url: srv.URL, up: up, img: img, ann: ann, spool: cfg.Dir}
}

// get asks the node as a peer, with the coalesce header when coalesce.
func (n *node) get(t *testing.T, ref string, coalesce bool, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	kind := "blobs"
	if d, err := digest.Parse(ref); err != nil || store.IsManifestOrIndex(n.img.Types[d]) {
		kind = "manifests"
	}
	u := fmt.Sprintf("%s/v2/%s/%s/%s?ns=%s", n.url, repo, kind, ref, n.up.Host)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(registry.PeerHeader, "node-x")
	if coalesce {
		req.Header.Set(oci.CoalesceHeader, "1")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestCoalescer_ServePeer_BurstFetchesOnce(t *testing.T) {
	t.Parallel()
	n := newNode(t, coalesce.Config{}, nil, "")
	layer := n.img.Layers[0]
	n.up.Counter.Reset()
	const requesters = 8
	var wg sync.WaitGroup
	for range requesters {
		wg.Go(func() {
			resp, b, err := n.get(t, "1.0", true)
			if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(b) != n.img.Target.Digest {
				t.Errorf("tag: %v %v, %d bytes", err, resp, len(b))
			}
			if resp != nil && resp.Header.Get("Docker-Content-Digest") != n.img.Target.Digest.String() {
				t.Errorf("tag: Docker-Content-Digest %q", resp.Header.Get("Docker-Content-Digest"))
			}
		})
		wg.Go(func() {
			resp, b, err := n.get(t, layer.Digest.String(), true)
			if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(b) != layer.Digest {
				t.Errorf("blob: %v %v, %d bytes", err, resp, len(b))
			}
		})
	}
	wg.Wait()
	blob := n.up.Counter.Kind(upstreamtest.KindBlob)
	if blob.Bytes > layer.Size*12/10 {
		t.Errorf("upstream served %d blob bytes for %d requesters of a %d-byte layer", blob.Bytes, requesters, layer.Size)
	}
	if m := n.up.Counter.Kind(upstreamtest.KindManifest); m.Requests > 2 {
		t.Errorf("upstream answered %d manifest requests for %d requesters of one tag", m.Requests, requesters)
	}
	if !n.ann.has(false, layer.Digest.String()) || !n.ann.has(false, n.img.Target.Digest.String()) {
		t.Errorf("fetched content not advertised: %v", n.ann.advertised)
	}
	// A plain peer request (no coalesce header) is answered from the spool,
	// ranged too; a tag never is.
	resp, b, err := n.get(t, layer.Digest.String(), false, "Range", "bytes=100-")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, n.img.Blobs[layer.Digest][100:]) {
		t.Errorf("ranged spool read: %v %v", err, resp)
	}
	if resp, _, _ := n.get(t, "1.0", false); resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("a plain peer request for a tag: %v, want 404", resp)
	}
}

func TestCoalescer_ServePeer_Refusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      coalesce.Config
		mirrors  []string
		data     string
		coalesce bool
		ref      func(n *node) string
		want     int
	}{
		{"no coalesce header", coalesce.Config{}, nil, "", false, layer0, http.StatusNotFound},
		{"fetch policy: drop-in deny", coalesce.Config{}, nil, "package sluice.fetch\n\ndeny contains \"no rollouts today\" if true\n", true, layer0, http.StatusNotFound},
		{"fetch policy: latest", coalesce.Config{}, nil, "", true, func(*node) string { return "latest" }, http.StatusNotFound},
		{"serve policy: registry not mirrored", coalesce.Config{}, []string{"docker.io"}, "", true, layer0, http.StatusForbidden},
		{"spool too small", coalesce.Config{MaxBytes: 1 << 20}, nil, "", true, layer0, http.StatusNotFound},
		{"unknown blob", coalesce.Config{}, nil, "", true, func(*node) string { return digest.FromString("nothing").String() }, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, tt.cfg, tt.mirrors, tt.data)
			n.up.Counter.Reset()
			start := time.Now()
			resp, _, err := n.get(t, tt.ref(n), tt.coalesce)
			if err != nil || resp.StatusCode != tt.want {
				t.Fatalf("%v %v, want %d", err, resp, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("404 took %v", d)
			}
			// A spool that cannot hold the blob learns its size from the
			// upstream's answer and hangs up: part of it may be in flight.
			limit := int64(0)
			if tt.cfg.MaxBytes != 0 {
				limit = n.img.Layers[0].Size * 3 / 4 // socket buffers, not the blob
			}
			if b := n.up.Counter.Kind(upstreamtest.KindBlob).Bytes; b > limit {
				t.Errorf("upstream served %d blob bytes for a refused request", b)
			}
			waitEmpty(t, n.spool)
		})
	}
}

func TestCoalescer_Expiry(t *testing.T) {
	t.Parallel()
	n := newNode(t, coalesce.Config{TTL: 200 * time.Millisecond, TagTTL: 100 * time.Millisecond}, nil, "")
	layer := n.img.Layers[0]
	if resp, _, err := n.get(t, layer.Digest.String(), true); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", err, resp)
	}
	waitEmpty(t, n.spool)
	deadline := time.Now().Add(5 * time.Second)
	for !n.ann.has(true, layer.Digest.String()) {
		if time.Now().After(deadline) {
			t.Fatal("expired blob not withdrawn")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, _, _ := n.get(t, layer.Digest.String(), false); resp.StatusCode != http.StatusNotFound {
		t.Errorf("expired blob still served: %d", resp.StatusCode)
	}
}

func layer0(n *node) string { return n.img.Layers[0].Digest.String() }

func TestCoalescer_Close(t *testing.T) {
	t.Parallel()
	n := newNode(t, coalesce.Config{}, nil, "")
	layer := n.img.Layers[0]
	if resp, _, err := n.get(t, layer.Digest.String(), true); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", err, resp)
	}
	if err := n.c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.spool); !os.IsNotExist(err) {
		t.Errorf("spool left after Close: %v", err)
	}
	if !n.ann.has(true, layer.Digest.String()) {
		t.Error("Close did not withdraw what was announced")
	}
	if resp, _, _ := n.get(t, layer.Digest.String(), true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a closed coalescer answered %d", resp.StatusCode)
	}
}

// waitEmpty waits until the spool directory holds no file.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d files", len(ents))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testSpool fills what cfg leaves unset: a spool of maxBytes in the
// test's directory, kept for a minute.
func testSpool(t *testing.T, cfg coalesce.Config, maxBytes int64) coalesce.Config {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "spool")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = maxBytes
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Minute
	}
	return cfg
}
