package policy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/policy"
)

// timedEngine sums the time spent in Decide.
type timedEngine struct {
	e     atomic.Pointer[policy.Set]
	ns, n atomic.Int64
}

func (t *timedEngine) Decide(ctx context.Context, a policy.Action, in policy.Input) (policy.Decision, error) {
	start := time.Now()
	d, err := t.e.Load().Decide(ctx, a, in)
	t.ns.Add(int64(time.Since(start)))
	t.n.Add(1)
	return d, err
}

// BenchmarkPullPolicyShare is the share of a 100 MB pull spent in policy:
// one image (a 100 MiB layer, two small layers, config, manifest) served
// by registry.New over loopback HTTP, pulled as containerd does (manifest
// by tag, then every blob by digest), by a server with the shipped policy
// set and by one without policy, interleaved in the same run. Variants:
//
//   - cache=off: every request evaluates Rego;
//   - cache=cold: the default cache, emptied before each pull (a new Set),
//     as a node pulls an image once;
//   - cache=peers: the default cache kept, each pull from another peer
//     (Sluice-Peer header, new connections), as a node serves one image
//     to many peers.
//
// Run:
//
//	go test -run '^$' -bench BenchmarkPullPolicyShare -benchtime 3x ./policy/
//
// policy-% is the time spent in Decide over the pull's time (target < 1);
// overhead-% the pull time with policy over the one without, minus one
// (the median of pairs; it is noise-bound at this size).
func BenchmarkPullPolicyShare(b *testing.B) {
	b.Run("cache=off", func(b *testing.B) { pullPolicyShare(b, 0, false, false) })
	b.Run("cache=cold", func(b *testing.B) { pullPolicyShare(b, policy.DefaultCacheSize, true, false) })
	b.Run("cache=peers", func(b *testing.B) { pullPolicyShare(b, policy.DefaultCacheSize, false, true) })
}

// pullPolicyShare: cacheSize of the Set, fresh: a new Set before each
// pull, peers: each pull as another peer over new connections.
func pullPolicyShare(b *testing.B, cacheSize int, fresh, peers bool) {
	ctx := b.Context()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/big:1.0",
		LayerSizes: []int64{100 << 20, 16 << 10, 4 << 10}, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	st, err := ocidir.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := img.WriteLayout(ctx, st); err != nil {
		b.Fatal(err)
	}
	newSet := func() *policy.Set {
		set, err := policy.Load(ctx, nil, policy.WithCacheSize(cacheSize))
		if err != nil {
			b.Fatal(err)
		}
		return set
	}
	te := &timedEngine{}
	te.e.Store(newSet())
	with := httptest.NewServer(registry.New(st, registry.WithPolicy(te)))
	defer with.Close()
	without := httptest.NewServer(registry.New(st))
	defer without.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	defer client.CloseIdleConnections()

	paths := []string{"/v2/library/big/manifests/1.0?ns=docker.io"}
	for _, d := range img.Digests() {
		kind := "blobs"
		if store.IsManifestOrIndex(img.Types[d]) {
			kind = "manifests"
		}
		paths = append(paths, "/v2/library/big/"+kind+"/"+d.String()+"?ns=docker.io")
	}
	buf := make([]byte, 1<<20)
	peer := ""
	pull := func(base string) (time.Duration, error) {
		start := time.Now()
		for _, p := range paths {
			if err := get(ctx, client, base+p, peer, buf); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	// Warm the page cache and the connections.
	for _, base := range []string{with.URL, without.URL} {
		if _, err := pull(base); err != nil {
			b.Fatal(err)
		}
	}
	te.ns.Store(0)
	te.n.Store(0)

	var ratios []float64
	var tWith time.Duration
	b.SetBytes(2 * int64(img.Largest().Size)) // each op pulls twice
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		order := []string{with.URL, without.URL}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		if fresh {
			te.e.Store(newSet())
		}
		if peers {
			peer = "12D3KooPeer" + strconv.Itoa(i)
			client.CloseIdleConnections() // a new peer, a new address
		}
		var d [2]time.Duration
		for _, base := range order {
			t, err := pull(base)
			if err != nil {
				b.Fatal(err)
			}
			if base == with.URL {
				d[0] = t
			} else {
				d[1] = t
			}
		}
		tWith += d[0]
		ratios = append(ratios, float64(d[0])/float64(d[1]))
	}
	b.StopTimer()
	slices.Sort(ratios)
	n := float64(b.N)
	b.ReportMetric(100*float64(te.ns.Load())/float64(tWith), "policy-%")
	b.ReportMetric(float64(te.ns.Load())/float64(te.n.Load()), "ns/decision")
	b.ReportMetric(float64(te.n.Load())/n, "decisions/pull")
	b.ReportMetric(100*(ratios[len(ratios)/2]-1), "overhead-%")
}

func get(ctx context.Context, c *http.Client, url, peer string, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if peer != "" {
		req.Header.Set(registry.PeerHeader, peer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	for {
		_, err := resp.Body.Read(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
