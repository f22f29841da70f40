package mirror_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// cluster is N registry nodes on loopback sharing a memory router.
type cluster struct {
	net   *routing.Memory
	nodes []*node
}

type node struct {
	id      string
	store   *memory.Store
	router  *routing.MemoryNode
	srv     *httptest.Server
	metrics *metrics.Metrics
	mirror  *mirror.Mirror
	handler http.Handler // wraps the registry, tests may replace
}

// clusterCfg tunes the fetching side of every node in a test cluster.
type clusterCfg struct {
	opts []mirror.Option                     // extra mirror options
	wrap func(routing.Router) routing.Router // wraps the router the mirror uses
	reg  []registry.Option                   // extra registry options (the serving side)
}

func newCluster(t *testing.T, n int) *cluster { return newClusterWith(t, n, clusterCfg{}) }

func newClusterWith(t testing.TB, n int, cfg clusterCfg) *cluster {
	c := &cluster{net: routing.NewMemory()}
	for i := range n {
		nd := &node{id: fmt.Sprintf("node-%d", i+1), store: memory.New(), metrics: metrics.New(nil)}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.MustParseAddrPort(ln.Addr().String())
		nd.router = c.net.Node(nd.id, addr)
		var r routing.Router = nd.router
		if cfg.wrap != nil {
			r = cfg.wrap(r)
		}
		opts := append([]mirror.Option{mirror.WithSelf(nd.id), mirror.WithMetrics(nd.metrics), mirror.WithResolveTimeout(50 * time.Millisecond)}, cfg.opts...)
		m := mirror.New(r, opts...)
		nd.mirror = m
		reg := registry.New(nd.store, append([]registry.Option{registry.WithMirror(m), registry.WithMetrics(nd.metrics)}, cfg.reg...)...)
		nd.handler = reg
		nd.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { nd.handler.ServeHTTP(w, r) }))
		nd.srv.Listener.Close()
		nd.srv.Listener = ln
		nd.srv.Start()
		t.Cleanup(nd.srv.Close)
		c.nodes = append(c.nodes, nd)
	}
	return c
}

// hold puts img into node i's store and advertises its keys.
func (c *cluster) hold(t testing.TB, i int, img *testimage.Image) {
	t.Helper()
	nd := c.nodes[i]
	if err := img.AddTo(nd.store, "docker.io"); err != nil {
		t.Fatal(err)
	}
	keys := []string{routing.TagKey("docker.io", "library/app", "1.0")}
	for _, d := range img.Digests() {
		keys = append(keys, d.String())
	}
	if err := nd.router.Advertise(t.Context(), keys); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
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

func buildImage(t testing.TB, sizes ...int64) *testimage.Image {
	t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSizes: sizes, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestMirror_PullThroughPeer(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	img := buildImage(t, 1<<20, 1000)
	c.hold(t, 0, img)
	b := c.nodes[2].srv.URL

	resp, body, err := get(t, b+"/v2/library/app/manifests/1.0?ns=docker.io")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("manifest by tag: %v %v %s", err, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != img.Target.Digest.String() {
		t.Fatalf("tag resolved to %s, want the peer's %s", got, img.Target.Digest)
	}
	if resp.Header.Get("Content-Type") != img.Target.MediaType {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	for _, d := range img.Digests() {
		kind := "blobs"
		if strings.Contains(img.Types[d], "manifest") || strings.Contains(img.Types[d], "index") {
			kind = "manifests"
		}
		resp, body, err := get(t, b+"/v2/library/app/"+kind+"/"+d.String())
		if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != d {
			t.Fatalf("%s %s: err %v status %v", kind, d, err, resp.StatusCode)
		}
	}
	// A range through a peer.
	l := img.Largest()
	resp, body, err = get(t, b+"/v2/library/app/blobs/"+l.Digest.String(), "Range", "bytes=1000-1999")
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, img.Blobs[l.Digest][1000:2000]) {
		t.Fatalf("range through peer: %v %v", err, resp.StatusCode)
	}
	if got := testutilCount(c.nodes[2].metrics); got == 0 {
		t.Fatalf("no bytes counted as fetched from peers")
	}
}

func TestMirror_UnknownIs404WithinResolveTimeout(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	start := time.Now()
	resp, body, err := get(t, c.nodes[1].srv.URL+"/v2/library/nothing/manifests/1.0")
	if err != nil || resp.StatusCode != 404 || !strings.Contains(string(body), "MANIFEST_UNKNOWN") {
		t.Fatalf("unknown: %v %v %s", err, resp.StatusCode, body)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("404 took %s", el)
	}
	resp, _, _ = get(t, c.nodes[1].srv.URL+"/v2/library/nothing/blobs/"+digest.FromString("x").String())
	if resp.StatusCode != 404 {
		t.Fatalf("unknown blob: %d", resp.StatusCode)
	}
}

func TestMirror_PeerRequestsAreNotMirrored(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	img := buildImage(t, 100)
	c.hold(t, 0, img)
	// Node 2 lacks the image; a request marked as coming from a peer must
	// not be forwarded (no loops).
	resp, _, _ := get(t, c.nodes[1].srv.URL+"/v2/library/app/manifests/1.0", registry.PeerHeader, "node-x")
	if resp.StatusCode != 404 {
		t.Fatalf("peer request on a node without the content: %d, want 404", resp.StatusCode)
	}
}

func TestMirror_CorruptPeerIsQuarantinedAndHealthyPeerServes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	img := buildImage(t, 2<<20)
	c.hold(t, 0, img)
	c.hold(t, 1, img)
	l := img.Largest()
	// Node 1 serves corrupted layer bytes (a flipped byte near the end).
	var corruptHits atomic.Int32
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, l.Digest.Encoded()) {
			good.ServeHTTP(w, r)
			return
		}
		corruptHits.Add(1)
		rec := httptest.NewRecorder()
		good.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b[len(b)-10] ^= 0xff
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b)
	})
	url := c.nodes[2].srv.URL + "/v2/library/app/blobs/" + l.Digest.String()
	var ok bool
	for range 3 {
		resp, body, err := get(t, url)
		if err == nil && resp.StatusCode == 200 {
			if digest.FromBytes(body) != l.Digest {
				t.Fatalf("a corrupt blob was delivered as a success")
			}
			ok = true
			break
		}
	}
	if !ok {
		t.Fatalf("never got the blob from the healthy peer")
	}
	if corruptHits.Load() == 0 {
		t.Fatal("the corrupt peer was never asked; the test did not test anything")
	}
}

func TestMirror_PeerDiesMidBlobResumes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	img := buildImage(t, 4<<20)
	c.hold(t, 0, img)
	c.hold(t, 1, img)
	l := img.Largest()
	// Whichever node is asked first sends half the layer and dies.
	var died atomic.Bool
	for _, i := range []int{0, 1} {
		good := c.nodes[i].handler
		c.nodes[i].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, l.Digest.Encoded()) && r.Header.Get("Range") == "" && died.CompareAndSwap(false, true) {
				w.Header().Set("Content-Length", fmt.Sprint(l.Size))
				w.WriteHeader(200)
				_, _ = w.Write(img.Blobs[l.Digest][:l.Size/2])
				panic(http.ErrAbortHandler)
			}
			good.ServeHTTP(w, r)
		})
	}
	resp, body, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("get: %v %v", err, resp)
	}
	if !died.Load() {
		t.Fatal("no peer died; the test did not test anything")
	}
	if digest.FromBytes(body) != l.Digest {
		t.Fatalf("resumed blob does not match its digest")
	}
}
