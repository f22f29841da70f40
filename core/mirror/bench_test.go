package mirror_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// BenchmarkPeerBlob fetches a blob through a peer: node B's registry lacks
// it and mirrors it from node A (hedged fetch, streaming sha256 check,
// one chunk held back) over loopback, peers found on a memory router. The
// baseline, measured in the same run and interleaved request by request,
// is the same GET served by A directly from its oci-layout store
// (sendfile): what the client would get if the blob were local.
//
//	go test -run '^$' -bench PeerBlob -benchtime 20x ./core/mirror/
//
// from=peer reports MB/s and ns/op through the peer, ratio-vs-local
// (median over pairs of local time / peer time; target ≥ 0.9), and the
// median time to the first body byte through the peer (ttfb-ms; target ≤
// 1.5 ms) and locally (local-ttfb-ms).
//
// CPU (cpu.go): every from= reports the process's CPU time (user+sys,
// getrusage) per GiB delivered, cpu-s/GiB, and beside it local-cpu-s/GiB
// of the interleaved local GETs; mirror-cpu-s/GiB is the difference, the
// receiving node's own work (read from A, verify, write to the client),
// since A's sendfile and the client's reads are in both. Baselines in the
// same run: from=peer-noverify is node C, a mirror with verification
// switched off by a test hook (the A/B; no binary can set it);
// from=proxy is a plain io.Copy proxy of A (a mirror without hashing, as
// Spegel serves); sha256 hashes the same bytes in memory, the floor of
// verification.
func BenchmarkPeerBlob(b *testing.B) {
	for _, size := range []int64{64 << 20, 16 << 10} {
		b.Run(fmt.Sprintf("size=%s", sizeName(size)), func(b *testing.B) {
			e := newPeerEnv(b, size)
			local := e.getter(e.a, e.path)
			through := map[string]func() (time.Duration, error){
				"peer":          e.getter(e.b, e.path),
				"peer-noverify": e.getter(e.c, e.path),
				"proxy":         e.getter(e.proxy, e.path),
			}
			for _, f := range []func() (time.Duration, error){local, through["peer"], through["peer-noverify"], through["proxy"]} { // warm up
				if _, err := f(); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("from=local", func(b *testing.B) {
				b.SetBytes(size)
				var ttfb []float64
				var cpu cpuMeter
				for b.Loop() {
					var t time.Duration
					err := cpu.measure(size, func() (err error) { t, err = local(); return err })
					if err != nil {
						b.Fatal(err)
					}
					ttfb = append(ttfb, ms(t))
				}
				b.ReportMetric(median(ttfb), "ttfb-ms")
				b.ReportMetric(cpu.perGiB(), "cpu-s/GiB")
			})
			for _, from := range []string{"peer", "peer-noverify", "proxy"} {
				b.Run("from="+from, func(b *testing.B) {
					b.SetBytes(size)
					comparePeer(b, size, local, through[from])
				})
			}
			b.Run("sha256", func(b *testing.B) {
				b.SetBytes(size)
				benchSHA256(b, e.blob(b))
			})
		})
	}
}

// comparePeer times peer fetches, with a local fetch beside each one
// (timer stopped, order alternating), and reports the ratio, TTFBs and
// CPU per GiB of both.
func comparePeer(b *testing.B, size int64, local, peer func() (time.Duration, error)) {
	var ratios, ttfbPeer, ttfbLocal []float64
	var cpuPeer, cpuLocal cpuMeter
	runLocal := func() time.Duration {
		b.StopTimer()
		defer b.StartTimer()
		start := time.Now()
		var t time.Duration
		err := cpuLocal.measure(size, func() (err error) { t, err = local(); return err })
		if err != nil {
			b.Fatal(err)
		}
		ttfbLocal = append(ttfbLocal, ms(t))
		return time.Since(start)
	}
	runPeer := func() time.Duration {
		start := time.Now()
		var t time.Duration
		err := cpuPeer.measure(size, func() (err error) { t, err = peer(); return err })
		if err != nil {
			b.Fatal(err)
		}
		ttfbPeer = append(ttfbPeer, ms(t))
		return time.Since(start)
	}
	for i := 0; b.Loop(); i++ {
		var tl, tp time.Duration
		if i%2 == 0 {
			tl, tp = runLocal(), runPeer()
		} else {
			tp, tl = runPeer(), runLocal()
		}
		ratios = append(ratios, float64(tl)/float64(tp))
	}
	b.ReportMetric(median(ratios), "ratio-vs-local")
	b.ReportMetric(median(ttfbPeer), "ttfb-ms")
	b.ReportMetric(median(ttfbLocal), "local-ttfb-ms")
	reportCPU(b, &cpuPeer, &cpuLocal)
}

// peerEnv is node A holding an image in an oci-layout store and node B
// with an empty store mirroring from A.
type peerEnv struct {
	a, b   string // base URLs
	c      string // a mirror like b with verification off (benchmark A/B)
	proxy  string // a plain io.Copy proxy of a
	path   string // the layer's blob path
	layer  ocispec.Descriptor
	client *http.Client
	buf    []byte
}

func newPeerEnv(b *testing.B, layerSize int64) *peerEnv {
	b.Helper()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", LayerSizes: []int64{layerSize}, Seed: 5})
	if err != nil {
		b.Fatal(err)
	}
	stA, err := ocidir.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := img.WriteLayout(b.Context(), stA); err != nil {
		b.Fatal(err)
	}
	net := routing.NewMemory()
	lnA, nodeA := listen(b, net, "node-a")
	lnB, nodeB := listen(b, net, "node-b")
	lnC, nodeC := listen(b, net, "node-c")
	keys := []string{routing.TagKey("docker.io", "library/app", "1.0")}
	for _, d := range img.Digests() {
		keys = append(keys, d.String())
	}
	if err := nodeA.Advertise(b.Context(), keys); err != nil {
		b.Fatal(err)
	}
	m := mirror.New(nodeB, mirror.WithSelf("node-b"), mirror.WithResolveTimeout(50*time.Millisecond))
	e := &peerEnv{
		a: serveOn(b, lnA, registry.New(stA)),
		b: serveOn(b, lnB, registry.New(memory.New(), registry.WithMirror(m))),
		c: serveOn(b, lnC, registry.New(memory.New(), registry.WithMirror(mirror.New(nodeC, mirror.WithSelf("node-c"),
			mirror.WithResolveTimeout(50*time.Millisecond), mirror.WithoutVerificationForBenchmark())))),
		layer:  img.Largest(),
		client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 4}},
		buf:    make([]byte, 1<<20),
	}
	e.path = "/v2/library/app/blobs/" + e.layer.Digest.String() + "?ns=docker.io"
	e.proxy = serveProxy(b, e.a)
	b.Cleanup(e.client.CloseIdleConnections)
	return e
}

func listen(b *testing.B, n *routing.Memory, id string) (net.Listener, *routing.MemoryNode) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln, n.Node(id, netip.MustParseAddrPort(ln.Addr().String()))
}

func serveOn(b *testing.B, ln net.Listener, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// getter returns a fetch of base+path that reads the whole body (1 MiB
// reads), checks its length and returns the time to the first body byte.
func (e *peerEnv) getter(base, path string) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		ctx := context.Background()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := e.client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %s", base+path, resp.Status)
		}
		var n int64
		var ttfb time.Duration
		for {
			m, err := resp.Body.Read(e.buf)
			if m > 0 && n == 0 {
				ttfb = time.Since(start)
			}
			n += int64(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, err
			}
		}
		if n != e.layer.Size {
			return 0, fmt.Errorf("GET %s: %d bytes of %d", base+path, n, e.layer.Size)
		}
		return ttfb, nil
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
