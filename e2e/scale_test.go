package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestNode_RSSWith10kAdvertisedKeys holds a node to its memory target: at
// most 64 MiB resident with 10,000 keys advertised on the DHT.
func TestNode_RSSWith10kAdvertisedKeys(t *testing.T) {
	const images, layers = 10, 1000
	dir := t.TempDir()
	var nodes []*cluster.Node
	for i := 1; i <= 2; i++ {
		spec := cluster.Spec{Name: fmt.Sprintf("scale%d", i), IP: fmt.Sprintf("127.0.0.%d", 10+i),
			Store: "oci:" + filepath.Join(dir, fmt.Sprint(i), "oci"), DataDir: filepath.Join(dir, fmt.Sprint(i))}
		var boot []string
		if len(nodes) > 0 {
			boot = []string{nodes[0].Addr}
		}
		n, err := cluster.Start(t.Context(), sluiceBin, spec, boot...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		nodes = append(nodes, n)
	}
	st, err := ocidir.Open(filepath.Join(dir, "1", "oci"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]int64, layers)
	for i := range sizes {
		sizes[i] = 16
	}
	want := 0
	for i := range images {
		img, err := testimage.Build(testimage.Spec{Name: fmt.Sprintf("docker.io/scale/img%d:1.0", i), LayerSizes: sizes, Seed: uint64(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := img.WriteLayout(t.Context(), st); err != nil {
			t.Fatal(err)
		}
		want += len(img.Blobs) + 1
	}
	start := time.Now()
	var got int
	if !cluster.WaitFor(t.Context(), 3*time.Minute, func() bool {
		s, err := nodes[0].Status(t.Context())
		got = s.AdvertisedKeys
		return err == nil && got >= want
	}) {
		t.Fatalf("advertised %d of %d keys", got, want)
	}
	rss, err := nodes[0].RSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys advertised in %s; node RSS %.1f MiB", got, time.Since(start).Round(time.Millisecond), float64(rss)/(1<<20))
	if rss > 64<<20 {
		t.Fatalf("node RSS %.1f MiB with %d advertised keys, want ≤ 64 MiB", float64(rss)/(1<<20), got)
	}
}
