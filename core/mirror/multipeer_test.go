package mirror_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/internal/testimage"
)

const mib = 1 << 20

// blobURL is the URL of blob d on node i.
func (c *cluster) blobURL(i int, d digest.Digest) string {
	return c.nodes[i].srv.URL + "/v2/library/app/blobs/" + d.String()
}

// servedToPeers returns the bytes node nd sent to peers.
func servedToPeers(nd *node) float64 {
	return counterValue(nd.metrics.BytesServed.WithLabelValues("peer"))
}

// TestMirror_MultiPeerPaced: with three paced providers, each one sends a
// share of the blob (the speed-up is BenchmarkMirror_MultiPeerPaced).
func TestMirror_MultiPeerPaced(t *testing.T) {
	// Not parallel: the shares depend on the providers' pacing, not on
	// which test the scheduler runs.
	const rate, size = 8 * mib, 24 * mib
	// No hedge: a first byte slowed by a loaded machine would race two
	// providers for the first chunk and leave one without work.
	c := newClusterWith(t, 4, clusterCfg{
		opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute)},
		reg:  []registry.Option{registry.WithPeerRateLimit(rate)},
	})
	img := buildImage(t, size)
	for i := range 3 {
		c.hold(t, i, img)
	}
	fetchBlob(t, c, img)
	for i := range 3 {
		if got := servedToPeers(c.nodes[i]); got < size/6 {
			t.Errorf("provider %d sent %.0f bytes of %d; the work was not shared", i, got, size)
		}
	}
	mt := c.nodes[3].metrics
	if multi, single := transfers(mt, "multi"), transfers(mt, "single"); multi != 1 || single != 0 {
		t.Errorf("transfers multi = %v, single = %v; want 1 and 0", multi, single)
	}
	// Every chunk but the first provider's first is one Range request.
	if got, want := counterValue(mt.PeerRangeRequests), float64(size/(4*mib)-1); got < want {
		t.Errorf("range requests = %v, want at least %v", got, want)
	}
	if got := counterValue(mt.MultiPeerMemoryFalls); got != 0 {
		t.Errorf("memory fallbacks = %v, want 0", got)
	}
}

// BenchmarkMirror_MultiPeerPaced: each provider's uplink is paced at R by
// --peer-rate-limit. One provider: the blob takes size/R. Three: it
// arrives at ≥ 2.5 R (x-speedup, same run).
//
//	go test -run '^$' -bench MultiPeerPaced -benchtime 1x -count 3 ./core/mirror/
func BenchmarkMirror_MultiPeerPaced(b *testing.B) {
	const rate, size = 8 * mib, 48 * mib
	for b.Loop() {
		c := newClusterWith(b, 4, clusterCfg{reg: []registry.Option{registry.WithPeerRateLimit(rate)}})
		img := buildImage(b, size)
		c.hold(b, 0, img)
		one := fetchBlob(b, c, img)
		c.hold(b, 1, img)
		c.hold(b, 2, img)
		three := fetchBlob(b, c, img)
		b.ReportMetric(one.Seconds(), "s-1-provider")
		b.ReportMetric(three.Seconds(), "s-3-providers")
		b.ReportMetric(one.Seconds()/three.Seconds(), "x-speedup")
	}
}

// fetchBlob gets img's largest blob through node 3, checks its digest and
// returns how long it took.
func fetchBlob(t testing.TB, c *cluster, img *testimage.Image) time.Duration {
	t.Helper()
	l := img.Largest()
	start := time.Now()
	resp, body, err := get(t, c.blobURL(3, l.Digest))
	el := time.Since(start)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	return el
}

// gate holds a response once shut reports true: its writes wait until
// open is closed (or the request ends).
type gate struct {
	http.ResponseWriter
	shut func() bool
	open <-chan struct{}
	ctx  context.Context
}

func (g gate) Write(b []byte) (int, error) {
	if g.shut() {
		select {
		case <-g.open:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	return g.ResponseWriter.Write(b)
}

func (g gate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func TestMirror_MultiPeerProviderKilled(t *testing.T) {
	t.Parallel()
	// Three paced providers, each in the middle of its first chunk; then
	// provider 1 dies: its connections drop (the reader sees a reset or an
	// early EOF) and it answers nothing more (its records stay on the
	// router, as a dead node's do). From that moment the two others hold
	// the responses they were sending (they stay busy with their chunks)
	// until some provider is asked for more: only an immediate
	// re-assignment of the dead provider's range lets the pull go on. The
	// idle timeout is a minute, so no watchdog can rescue it; the pull must
	// complete, with the right digest, within the test's own 10 s.
	const rate, size = 8 * mib, 16 * mib
	c := newClusterWith(t, 4, clusterCfg{
		// No hedge either: under -race a slow first byte hedged to another
		// provider left the victim without work (it never served).
		opts: []mirror.Option{mirror.WithIdleTimeout(time.Minute), mirror.WithHedgeDelay(time.Minute)},
		reg:  []registry.Option{registry.WithPeerRateLimit(rate)},
	})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	var dead atomic.Bool
	reassigned := make(chan struct{})
	var reassign sync.Once
	victim := c.nodes[1]
	for i, nd := range c.nodes[:3] {
		good := nd.handler
		nd.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case i == 1 && dead.Load():
				panic(http.ErrAbortHandler)
			case i == 1 || !strings.Contains(r.URL.Path, l.Digest.Encoded()):
				good.ServeHTTP(w, r)
			case dead.Load(): // asked after the death: the range was re-assigned
				reassign.Do(func() { close(reassigned) })
				good.ServeHTTP(w, r)
			default: // started before the death: held from then on
				good.ServeHTTP(gate{ResponseWriter: w, shut: dead.Load, open: reassigned, ctx: r.Context()}, r)
			}
		})
	}
	go func() { // dies once every provider is well into its first chunk
		for t.Context().Err() == nil {
			if servedToPeers(c.nodes[0]) >= 1.5*mib && servedToPeers(victim) >= 1.5*mib && servedToPeers(c.nodes[2]) >= 1.5*mib {
				break
			}
			time.Sleep(time.Millisecond)
		}
		dead.Store(true)
		victim.srv.CloseClientConnections()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.blobURL(3, l.Digest), nil)
	resp, err := http.DefaultClient.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	select {
	case <-reassigned:
	default:
		t.Fatalf("the dead provider's range was not asked of another provider while they were busy (pull: %v, dead %v, served %.1f %.1f %.1f MiB)", err, dead.Load(), servedToPeers(c.nodes[0])/mib, servedToPeers(victim)/mib, servedToPeers(c.nodes[2])/mib)
	}
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	if !dead.Load() {
		t.Fatal("the pull ended before the provider was killed; the test tested nothing")
	}
	if got := counterValue(c.nodes[3].metrics.ResumedFetches); got == 0 {
		t.Fatal("no range was handed to another provider")
	}
	if got := providerEvents(c.nodes[3].metrics, "failed"); got < 1 {
		t.Fatalf("provider events failed = %v, want at least 1 (the killed provider)", got)
	}
}

// lie makes node nd answer every GET of blob d (whole or ranged) with the
// bytes of blob, one byte in every 64 KiB flipped, unpaced.
func lie(t *testing.T, nd *node, d digest.Digest, blob []byte) *atomic.Int32 {
	bad := bytes.Clone(blob)
	for i := 12345; i < len(bad); i += 64 << 10 { // whatever part it serves is wrong
		bad[i] ^= 0xff
	}
	return behave(nd, d, func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		serveRange(t, w, r, bad, int64(len(bad)), func(b []byte) { _, _ = w.Write(b) })
		return true
	})
}

func TestMirror_MultiPeerWrongBytes(t *testing.T) {
	t.Parallel()
	// Provider 1 serves wrong bytes, fast;
	// the others are paced. The client never gets a complete body; the
	// liar, and only it, is quarantined once a verified copy proves it;
	// a retry completes with the right digest.
	const rate, size = 8 * mib, 16 * mib
	c := newClusterWith(t, 4, clusterCfg{reg: []registry.Option{registry.WithPeerRateLimit(rate)}})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	hits := lie(t, c.nodes[1], l.Digest, img.Blobs[l.Digest])
	url := c.blobURL(3, l.Digest)
	resp, body, err := get(t, url)
	if err == nil {
		t.Fatalf("the client got a complete body (status %d, %d bytes, digest match %v) from a transfer with wrong bytes",
			resp.StatusCode, len(body), digest.FromBytes(body) == l.Digest)
	}
	if hits.Load() == 0 {
		t.Fatal("the liar was never asked; the test tested nothing")
	}
	fails := c.nodes[3].metrics.PeerVerifyFailures
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(fails) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if counterValue(fails) == 0 {
		t.Fatal("the liar was never quarantined")
	}
	resp, body, err = get(t, url)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("retry: %v %v", err, resp)
	}
	if got := counterValue(fails); got != 1 {
		t.Fatalf("%v peers quarantined, want 1 (the liar)", got)
	}
	mt := c.nodes[3].metrics
	if got, gauge := providerEvents(mt, "quarantined"), collectedValue(mt.QuarantinedPeers); got != 1 || gauge != 1 {
		t.Errorf("provider events quarantined = %v, quarantined peers gauge = %v; want 1 and 1", got, gauge)
	}
	if got := transfers(mt, "multi"); got < 1 {
		t.Errorf("multi-peer transfers = %v, want at least 1", got)
	}
}

func TestMirror_PeerFetchParallel(t *testing.T) {
	t.Parallel()
	const size = 12 * mib
	for _, tc := range []struct {
		parallel, wantProviders int
		rng                     string
	}{
		{parallel: 1, wantProviders: 1},
		{parallel: 3, wantProviders: 3},
		{parallel: 3, wantProviders: 3, rng: fmt.Sprintf("bytes=%d-%d", mib-10, 12*mib-1)}, // three chunks
		{parallel: 2, wantProviders: 2},
	} {
		t.Run(fmt.Sprintf("parallel=%d/range=%q", tc.parallel, tc.rng), func(t *testing.T) {
			t.Parallel()
			// Paced providers so each one's first chunk is still running
			// when the others ask: every allowed provider gets work. No
			// hedge: a first byte slowed by a loaded machine (-race) would
			// ask one provider more than the fan-out under test.
			c := newClusterWith(t, 4, clusterCfg{
				opts: []mirror.Option{mirror.WithPeerFetchParallel(tc.parallel), mirror.WithHedgeDelay(time.Minute)},
				reg:  []registry.Option{registry.WithPeerRateLimit(16 * mib)},
			})
			img := buildImage(t, size)
			l := img.Largest()
			blob := img.Blobs[l.Digest]
			var hits [3]*atomic.Int32
			for i := range 3 {
				c.hold(t, i, img)
				hits[i] = behave(c.nodes[i], l.Digest, func(int32, http.ResponseWriter, *http.Request) bool { return false })
			}
			var hdr []string
			want, status := blob, 200
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
				r, _, err := oci.ParseRange(tc.rng, size)
				if err != nil {
					t.Fatal(err)
				}
				want, status = blob[r.Start:r.Start+r.Length], 206
			}
			resp, body, err := get(t, c.blobURL(3, l.Digest), hdr...)
			if err != nil || resp.StatusCode != status || !bytes.Equal(body, want) {
				t.Fatalf("get: %v %v (%d bytes, want %d)", err, resp, len(body), len(want))
			}
			asked := 0
			for _, h := range hits {
				if h.Load() > 0 {
					asked++
				}
			}
			if asked != tc.wantProviders {
				t.Fatalf("%d providers asked, want %d", asked, tc.wantProviders)
			}
		})
	}
}

// crawler slows a response to about 512 KiB/s.
type crawler struct{ http.ResponseWriter }

func (c crawler) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		k := min(len(b), 64<<10)
		time.Sleep(125 * time.Millisecond)
		m, err := c.ResponseWriter.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

func (c crawler) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func TestMirror_MultiPeerSlowProviderRebalanced(t *testing.T) {
	t.Parallel()
	// Providers at 8 MiB/s, one of them crawling at 0.5 MiB/s: a 4 MiB
	// chunk left to it alone would take 8 s. The others take its work
	// (half of what it has left, each time they run dry).
	const rate, size = 8 * mib, 16 * mib
	c := newClusterWith(t, 4, clusterCfg{reg: []registry.Option{registry.WithPeerRateLimit(rate)}})
	img := buildImage(t, size)
	l := img.Largest()
	for i := range 3 {
		c.hold(t, i, img)
	}
	reg := c.nodes[1].handler
	hits := behave(c.nodes[1], l.Digest, func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		reg.ServeHTTP(crawler{w}, r)
		return true
	})
	start := time.Now()
	resp, body, err := get(t, c.blobURL(3, l.Digest))
	el := time.Since(start)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	if hits.Load() == 0 {
		t.Fatal("the slow provider was never asked; the test tested nothing")
	}
	// Left alone, its first 4 MiB chunk would take 8 s.
	if el > 6*time.Second {
		t.Fatalf("pull took %s behind a slow provider; its work was not rebalanced", el)
	}
	t.Logf("16 MiB from 2 providers at 8 MiB/s and one at 0.5 MiB/s: %s", el.Round(time.Millisecond))
}
