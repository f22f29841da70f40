package mirror_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

// rolloutNode is a node with coalescing on: its mirror asks the
// responsible node when no peer holds a key, and its coalescer answers
// such requests from the upstream.
type rolloutNode struct {
	id  string
	srv *httptest.Server
}

func newRolloutCluster(t *testing.T, n int, upstreamHost string) []*rolloutNode {
	t.Helper()
	// registries.yaml names the upstream: a node fetches for peers only
	// from registries listed by name (and never an unnamed loopback host).
	regs, _, err := config.ParseRegistries("registries.yaml", []byte(fmt.Sprintf("mirrors:\n  %q:\n", upstreamHost)))
	if err != nil {
		t.Fatal(err)
	}
	net0 := routing.NewMemory()
	var nodes []*rolloutNode
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := net0.Node(id, netip.MustParseAddrPort(ln.Addr().String()))
		c, err := coalesce.New(upstream.New(regs), coalesce.Config{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 64 << 20, TTL: time.Minute},
			coalesce.WithAnnouncer(r))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		m := mirror.New(r, mirror.WithSelf(id), mirror.WithResolveTimeout(50*time.Millisecond), mirror.WithCoalesce(r.Peer()))
		srv := httptest.NewUnstartedServer(registry.New(memory.New(), registry.WithMirror(m), registry.WithCoalescer(c)))
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		nodes = append(nodes, &rolloutNode{id: id, srv: srv})
	}
	return nodes
}

// pull fetches the whole image through a node as its containerd would:
// the tag, then every manifest, config and layer by digest, each checked.
func pull(t *testing.T, base, registryHost string, img *testimage.Image) error {
	t.Helper()
	resp, b, err := get(t, fmt.Sprintf("%s/v2/library/app/manifests/1.0?ns=%s", base, registryHost))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || digest.FromBytes(b) != img.Target.Digest {
		return fmt.Errorf("tag: status %d, %d bytes", resp.StatusCode, len(b))
	}
	for _, d := range img.Digests() {
		kind := "blobs"
		if store.IsManifestOrIndex(img.Types[d]) {
			kind = "manifests"
		}
		resp, b, err := get(t, fmt.Sprintf("%s/v2/library/app/%s/%s?ns=%s", base, kind, d, registryHost))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || digest.FromBytes(b) != d {
			return fmt.Errorf("%s: status %d, %d bytes", d, resp.StatusCode, len(b))
		}
	}
	return nil
}

func TestMirror_CoalescedRollout(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t, upstreamtest.Options{})
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{5 << 20, 3 << 20, 1 << 20}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Push(t.Context(), "library/app", "1.0", img); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range img.Digests() {
		if !store.IsManifestOrIndex(img.Types[d]) {
			total += int64(len(img.Blobs[d]))
		}
	}
	nodes := newRolloutCluster(t, 4, up.Host)
	up.Counter.Reset()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			if err := pull(t, n.srv.URL, up.Host, img); err != nil {
				t.Errorf("%s: %v", n.id, err)
			}
		})
	}
	wg.Wait()
	if b := up.Counter.Kind(upstreamtest.KindBlob).Bytes; b > total*12/10 {
		t.Errorf("upstream served %d blob bytes for 4 pulls of %d", b, total)
	}
	for _, d := range append([]digest.Digest{img.Target.Digest}, img.Digests()...) {
		if !store.IsManifestOrIndex(img.Types[d]) {
			continue
		}
		gets := 0
		for _, r := range up.Counter.Requests() {
			if r.Method == http.MethodGet && upstreamtest.KindOf(r.Path) == upstreamtest.KindManifest &&
				(r.Path == "/v2/library/app/manifests/"+d.String() || d == img.Target.Digest && r.Path == "/v2/library/app/manifests/1.0") {
				gets++
			}
		}
		if gets > 2 {
			t.Errorf("manifest %s: %d upstream GETs for 4 pulls", d, gets)
		}
	}
}

// TestMirror_CoalesceResponsibleDown: a responsible node that does not
// answer costs a quick 404, as without coalescing.
func TestMirror_CoalesceResponsibleDown(t *testing.T) {
	t.Parallel()
	nodes := newRolloutCluster(t, 2, "registry.example")
	nodes[1].srv.Close()
	// A key node-2 is responsible for, as node-1 sees it.
	m := routing.NewMemory()
	a := m.Node(nodes[0].id, netip.MustParseAddrPort("127.0.0.1:1"))
	m.Node(nodes[1].id, netip.MustParseAddrPort("127.0.0.1:2"))
	var d digest.Digest
	for i := 0; d == ""; i++ {
		k := digest.FromString(fmt.Sprint(i))
		if _, self, err := a.Responsible(t.Context(), k.String()); err == nil && !self {
			d = k
		}
	}
	start := time.Now()
	resp, _, err := get(t, fmt.Sprintf("%s/v2/library/app/blobs/%s?ns=docker.io", nodes[0].srv.URL, d))
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("%v %v, want 404", err, resp)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("404 after %v", el)
	}
}
