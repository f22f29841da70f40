package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestNode_RSSWith10kAdvertisedKeys holds a node to its memory target: at
// most 64 MiB resident with 10,000 keys advertised on the DHT.
//
// About two thirds of that RSS are pages of the binary, and how many of
// them a fault maps depends on how the file entered the page cache: since
// Linux 6.18 a fault maps the whole large folio around it, and the Go
// linker writes its output through a mapping, leaving large folios that
// inflate the binary's RSS by 3-6 MiB over the same binary written by
// ordinary writes. Nodes run a binary that containerd unpacked from an
// image layer (32 KiB writes), so the test runs a copy written that way.
func TestNode_RSSWith10kAdvertisedKeys(t *testing.T) {
	const images, layers = 10, 1000
	dir := t.TempDir()
	bin := copyAsUnpacked(t, sluiceBin, filepath.Join(dir, "sluice"))
	var nodes []*cluster.Node
	for i := 1; i <= 2; i++ {
		spec := cluster.Spec{Name: fmt.Sprintf("scale%d", i), IP: fmt.Sprintf("127.0.0.%d", 10+i),
			Store: "oci:" + filepath.Join(dir, fmt.Sprint(i), "oci"), DataDir: filepath.Join(dir, fmt.Sprint(i))}
		var boot []string
		if len(nodes) > 0 {
			boot = []string{nodes[0].Addr}
		}
		n, err := cluster.Start(t.Context(), bin, spec, boot...)
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
	advertised := time.Since(start)
	// At rest: once the node is quiet it returns the garbage of the burst
	// to the OS (sluice_memory_trims_total), within two ticks of memtrim.
	// Read every 2 s, like a (busy) scraper: each /metrics read allocates,
	// and reading it every 50 ms would keep the node from being quiet.
	var rss int64
	var trims float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		var err error
		if rss, err = nodes[0].RSS(); err != nil {
			t.Fatal(err)
		}
		trims, _ = nodes[0].Metric(t.Context(), "sluice_memory_trims_total")
		if trims > 0 && rss <= 64<<20 {
			break
		}
	}
	if trims == 0 {
		t.Errorf("the node never trimmed within 30 s of going quiet (sluice_memory_trims_total 0)")
	}
	t.Logf("%d keys advertised in %s; at rest after %s: node RSS %.1f MiB, %v trims (%s)", got, advertised.Round(time.Millisecond),
		(time.Since(start) - advertised).Round(time.Millisecond), float64(rss)/(1<<20), trims, nodes[0].MemoryBreakdown())
	for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes"} {
		v, err := nodes[0].Metric(t.Context(), m)
		t.Logf("%s %.1f MiB %v", m, v/(1<<20), err)
	}
	if rss > 64<<20 {
		t.Fatalf("node RSS %.1f MiB with %d advertised keys, want ≤ 64 MiB", float64(rss)/(1<<20), got)
	}
}

// copyAsUnpacked writes src to dst in 32 KiB writes, as containerd's
// unpacker (io.Copy) writes a layer's files, and returns dst.
func copyAsUnpacked(t *testing.T, src, dst string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 32<<10)); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestNode_PprofOnlyWhenAsked: Go's profiles are on the metrics listener
// only with --pprof (the profile in RATIONALE.md was taken this way).
func TestNode_PprofOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusNotFound},
		{[]string{"--pprof"}, http.StatusOK},
	} {
		spec := cluster.Spec{Name: fmt.Sprintf("pprof%d", i), IP: fmt.Sprintf("127.0.0.%d", 20+i),
			Store: "oci:" + filepath.Join(dir, fmt.Sprint(i), "oci"), DataDir: filepath.Join(dir, fmt.Sprint(i)), Args: tc.args}
		n, err := cluster.Start(t.Context(), sluiceBin, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		resp, err := http.Get(n.MetricsURL() + "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%v: /debug/pprof/heap status %d, want %d", tc.args, resp.StatusCode, tc.want)
		}
	}
}
