package e2e

import (
	"testing"
)

// TestRegistry_ContainerdPullsFromSluiceOverContainerd: `sluice run` over a
// real containerd serves the image to a peer: a second node's containerd,
// which has its own sluice as its mirror in hosts.toml, pulls it through
// that sluice, which fetches it from the first node. The upstream is a
// closed port. (The first node never answers its own containerd from its
// own store: see TestLocal_ContainerdTagsResolvedThroughPeersOnly.)
func TestRegistry_ContainerdPullsFromSluiceOverContainerd(t *testing.T) {
	e := newEnv(t, 2)
	img := e.image("direct:1.0", 11, 2<<20, 512<<10)
	e.importTo(0, img)
	if err := e.pull(t.Context(), 1, img.Name); err != nil {
		t.Fatal(err)
	}
	e.assertHas(1, img)
	if peer := e.metric(0, "sluice_bytes_served_total", `to="peer"`); peer < float64(img.Largest().Size) {
		t.Fatalf("node1 served %.0f bytes to peers, want the image", peer)
	}
	if local := e.metric(1, "sluice_bytes_fetched_total", `from="peer"`); local < float64(img.Largest().Size) {
		t.Fatalf("node2 fetched %.0f bytes from peers, want the image", local)
	}
}
