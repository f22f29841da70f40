package routing

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchNodes starts n nodes on 127.0.0.1…n, all bootstrapping from the
// first, and waits until each knows at least n/2 peers.
func benchNodes(b *testing.B, n int) []*P2P {
	b.Helper()
	nodes := []*P2P{newTestNode(b, "127.0.0.1", 6000, P2PConfig{})}
	boot := []string{bootstrapAddr(b, nodes[0])}
	for i := 1; i < n; i++ {
		nodes = append(nodes, newTestNode(b, fmt.Sprintf("127.0.0.%d", i+1), uint16(6000+i), P2PConfig{Bootstrap: boot}))
	}
	waitReady(b, nodes...)
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range nodes {
		for nd.PeerCount() < n/2 && time.Now().Before(deadline) {
			<-nd.dht.RefreshRoutingTable()
		}
	}
	return nodes
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(int(float64(len(s))*p), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkLookup measures the time from Lookup to the first peer (what the
// mirror waits for) on 12 in-process nodes, the key held by one of them.
func BenchmarkLookup(b *testing.B) {
	const n = 12
	nodes := benchNodes(b, n)
	holder := nodes[n/2]
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = TagKey("docker.io", "bench/app", fmt.Sprint(i))
	}
	if err := holder.Advertise(b.Context(), keys); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	misses := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		from := nodes[i%n]
		if from == holder {
			from = nodes[(i+1)%n]
		}
		ctx, cancel := context.WithTimeout(b.Context(), time.Second)
		start := time.Now()
		ch, err := from.Lookup(ctx, keys[i%len(keys)], 1)
		if err != nil {
			b.Fatal(err)
		}
		p, ok := <-ch
		took = append(took, time.Since(start))
		cancel()
		for range ch {
		}
		if !ok || p.ID != holder.ID().String() {
			misses++
		}
	}
	b.StopTimer()
	b.ReportMetric(percentile(took, 0.50), "p50-ms")
	b.ReportMetric(percentile(took, 0.99), "p99-ms")
	b.ReportMetric(float64(misses), "misses")
}

// BenchmarkAdvertise measures announcing one new key on 12 nodes.
func BenchmarkAdvertise(b *testing.B) {
	const n = 12
	nodes := benchNodes(b, n)
	var took []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := nodes[i%n].Advertise(b.Context(), []string{TagKey("docker.io", "bench/adv", fmt.Sprint(i))}); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(percentile(took, 0.50), "p50-ms")
	b.ReportMetric(percentile(took, 0.99), "p99-ms")
}
