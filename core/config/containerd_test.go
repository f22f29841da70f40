package config_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// testRegistry is a tiny read-only OCI registry on 127.0.0.1. Every
// repository holds one image (tag v1) built from the repository name, so each
// test stage pulls fresh digests. It counts requests per repository, and
// when serving is off it answers 404 like a sluice that has nothing.
type testRegistry struct {
	name string
	srv  *httptest.Server
	log  *requestLog

	mu     sync.Mutex
	serve  bool
	images map[string]*testimage.Image
	hits   map[string]int // repository -> requests
}

// requestLog records which registry saw a repository first, second, ...
type requestLog struct {
	mu    sync.Mutex
	order map[string][]string
}

func (l *requestLog) saw(repo, server string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.order[repo], server) {
		l.order[repo] = append(l.order[repo], server)
	}
}

func (l *requestLog) get(repo string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.order[repo])
}

func newTestRegistry(t *testing.T, name string, log *requestLog) *testRegistry {
	r := &testRegistry{name: name, log: log, serve: true, images: map[string]*testimage.Image{}, hits: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *testRegistry) setServe(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serve = on
}

func (r *testRegistry) count(repo string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[repo]
}

func (r *testRegistry) image(repo string) (*testimage.Image, error) {
	if img, ok := r.images[repo]; ok {
		return img, nil
	}
	h := fnv.New64a()
	h.Write([]byte(repo))
	img, err := testimage.Build(testimage.Spec{
		Name:       "example/" + repo + ":v1",
		Platforms:  []string{runtime.GOOS + "/" + runtime.GOARCH},
		LayerSizes: []int64{256},
		Seed:       h.Sum64(),
	})
	if err != nil {
		return nil, err
	}
	r.images[repo] = img
	return img, nil
}

func (r *testRegistry) handle(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); ok && i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
			break
		}
	}
	if repo == "" {
		http.NotFound(w, req)
		return
	}
	r.log.saw(repo, r.name)
	r.mu.Lock()
	r.hits[repo]++
	serve := r.serve
	img, err := r.image(repo)
	r.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !serve {
		http.NotFound(w, req)
		return
	}
	d := digest.Digest(ref)
	if kind == "manifests" && ref == "v1" {
		d = img.Target.Digest
	}
	b, ok := img.Blobs[d]
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", img.Types[d])
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// TestContainerdHonoursHosts pulls with a real containerd through the hosts
// directory sluice wrote: sluice first, then the listed endpoint, then the
// upstream, and never the upstream with --disable-default-endpoint.
func TestContainerdHonoursHosts(t *testing.T) {
	log := &requestLog{order: map[string][]string{}}
	sluice := newTestRegistry(t, "sluice", log)
	endpoint := newTestRegistry(t, "endpoint", log)
	upstream := newTestRegistry(t, "upstream", log)

	dir := t.TempDir()
	regFile := filepath.Join(dir, "registries.yaml")
	yaml := fmt.Sprintf("mirrors:\n  %q:\n    endpoint:\n      - http://%s\n", upstream.host(), endpoint.host())
	if err := os.WriteFile(regFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, _, err := config.LoadRegistries(regFile)
	if err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "certs.d")
	configure := func(disable bool) {
		t.Helper()
		if _, err := config.WriteHosts(t.Context(), config.HostsOptions{
			Registries: reg, HostsDir: hosts, Mirror: sluice.srv.URL, DisableDefaultEndpoint: disable,
		}); err != nil {
			t.Fatal(err)
		}
	}
	configure(false)

	d := ctrtest.Start(t)
	pull := func(repo string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		_, err := d.Ctr(ctx, "images", "pull", "--local", "--snapshotter", "native", "--hosts-dir", hosts, upstream.host()+"/"+repo+":v1")
		return err
	}

	stages := []struct {
		repo    string
		serving [3]bool // sluice, endpoint, upstream
		disable bool
		order   []string
		pulled  bool
	}{
		{"stage1/sluice", [3]bool{true, true, true}, false, []string{"sluice"}, true},
		{"stage2/endpoint", [3]bool{false, true, true}, false, []string{"sluice", "endpoint"}, true},
		{"stage3/upstream", [3]bool{false, false, true}, false, []string{"sluice", "endpoint", "upstream"}, true},
		{"stage4/no-default", [3]bool{false, false, true}, true, []string{"sluice", "endpoint"}, false},
	}
	for _, st := range stages {
		sluice.setServe(st.serving[0])
		endpoint.setServe(st.serving[1])
		upstream.setServe(st.serving[2])
		if st.disable {
			configure(true)
		}
		err := pull(st.repo)
		if st.pulled && err != nil {
			t.Fatalf("%s: pull failed: %v", st.repo, err)
		}
		if !st.pulled && err == nil {
			t.Fatalf("%s: pull succeeded, want a failure", st.repo)
		}
		got := log.get(st.repo)
		if !slices.Equal(got, st.order) {
			t.Errorf("%s: registries asked, in order: %v; want %v", st.repo, got, st.order)
		}
		t.Logf("%s: requests sluice=%d endpoint=%d upstream=%d", st.repo,
			sluice.count(st.repo), endpoint.count(st.repo), upstream.count(st.repo))
		if st.disable && upstream.count(st.repo) != 0 {
			t.Errorf("%s: upstream got %d requests with the default endpoint disabled", st.repo, upstream.count(st.repo))
		}
	}
}
