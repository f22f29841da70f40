package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestP2P is the P2P issue's end-to-end check: three containerd daemons
// and three sluice nodes on 127.0.0.1-3, the upstream a closed port, so
// every successful pull came through sluice.
func TestP2P(t *testing.T) {
	// node1 sends at most 6 MiB/s to peers, so a large blob takes long
	// enough to kill node1 in the middle of it.
	e := newEnv(t, 3, []string{"--peer-rate-limit", "6291456"})
	ctx := t.Context()

	t.Run("ImportedWhileRunningIsPulledThroughPeer", func(t *testing.T) {
		img := e.image("app:1.0", 1, 3<<20, 1<<20, 4096)
		e.importTo(0, img)
		if err := e.pull(ctx, 2, img.Name); err != nil {
			t.Fatal(err)
		}
		e.assertHas(2, img)
		if served := e.metric(0, "sluice_bytes_served_total", `to="peer"`); served < float64(img.Largest().Size) {
			t.Fatalf("node1 served %.0f bytes to peers, want at least the largest layer (%d)", served, img.Largest().Size)
		}
	})

	t.Run("TagPulledAfterStartIsServedOn", func(t *testing.T) {
		img := e.image("pulled:2.0", 2, 2<<20)
		e.importTo(0, img)
		before := e.advertised(1)
		if err := e.pull(ctx, 1, img.Name); err != nil { // node2 pulls it through node1
			t.Fatal(err)
		}
		e.assertHas(1, img)
		// What node2 pulled while running is advertised by node2, tag too.
		e.waitAdvertised(1, func(n int) bool { return n >= before+len(img.Blobs)+1 })
		// Remove it from node1: node3 can only get it from node2 now.
		held := e.advertised(0)
		if _, err := e.daemons[0].Ctr(ctx, "images", "rm", "--sync", img.Name); err != nil {
			t.Fatal(err)
		}
		// node1 withdraws it (and the next subtest counts from there).
		e.waitAdvertised(0, func(n int) bool { return n <= held-len(img.Blobs)-1 })
		servedBefore := e.metric(1, "sluice_bytes_served_total", `to="peer"`)
		if err := e.pull(ctx, 2, img.Name); err != nil {
			t.Fatal(err)
		}
		e.assertHas(2, img)
		if got := e.metric(1, "sluice_bytes_served_total", `to="peer"`) - servedBefore; got < float64(img.Largest().Size) {
			t.Fatalf("node2 served %.0f bytes, want the image", got)
		}
	})

	t.Run("DeletedImageIsWithdrawn", func(t *testing.T) {
		img := e.image("gone:1.0", 3, 1<<20)
		e.importTo(0, img)
		before := e.advertised(0)
		if _, err := e.daemons[0].Ctr(ctx, "images", "rm", "--sync", img.Name); err != nil {
			t.Fatal(err)
		}
		e.waitAdvertised(0, func(n int) bool { return n <= before-len(img.Blobs)-1 })
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := e.pull(pctx, 2, img.Name); err == nil {
			t.Fatal("a deleted image was still pulled through the mirror")
		}
	})

	t.Run("CorruptBlobOnOneNodeNeverServed", func(t *testing.T) {
		img := e.image("corrupt:1.0", 4, 8<<20, 1<<20)
		e.importTo(0, img)
		e.importTo(1, img)
		// Corrupt the largest layer on node2's disk.
		l := img.Largest()
		path := e.daemons[1].ContentPath(l.Digest.String())
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("corrupted!"), l.Size/2); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := e.pull(ctx, 2, img.Name); err != nil {
			t.Fatalf("pull with one corrupt peer: %v", err)
		}
		e.assertHas(2, img) // ctr verified every digest on commit
		// Whoever served the pull, node2 never hands the corrupt layer to a
		// peer: it checks the file against its digest first.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.nodes[1].RegistryURL()+"/v2/e2e/corrupt/blobs/"+l.Digest.String()+"?ns="+e.registry, nil)
		req.Header.Set(registry.PeerHeader, "e2e-test")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		// A 404 when the file was already found bad; else the response,
		// streamed behind the hash, is aborted before its last byte.
		if digest.FromBytes(body) == l.Digest || (resp.StatusCode != http.StatusNotFound && rerr == nil) {
			t.Fatalf("node2 served its corrupt layer to a peer: status %d, %d bytes, read error %v", resp.StatusCode, len(body), rerr)
		}
		if failures := e.metric(1, "sluice_local_verification_failures_total"); failures < 1 {
			t.Fatalf("node2 counted %.0f verification failures", failures)
		}
	})

	t.Run("PeerKilledMidBlobPullCompletes", func(t *testing.T) {
		img, err := testimage.Build(testimage.Spec{Name: e.registry + "/e2e/big:1.0", LayerSizes: []int64{64 << 20}, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		// node2 holds the image too, but its sluice is down while the pull
		// starts, so node1 (rate-limited) is the only provider at first.
		spec2 := e.nodes[1].Spec
		e.nodes[1].Stop()
		if out, err := runCmd(ctx, sluiceBin, "import", "--store", "containerd://"+e.daemons[1].Socket, e.tarOf(img)); err != nil {
			t.Fatalf("import into node2: %v\n%s", err, out)
		}
		e.importTo(0, img)
		base := e.metric(0, "sluice_bytes_served_total", `to="peer"`)
		done := make(chan error, 1)
		go func() { done <- e.pull(ctx, 2, img.Name) }()
		if !cluster.WaitFor(ctx, 30*time.Second, func() bool {
			v, err := e.nodes[0].Metric(ctx, "sluice_bytes_served_total", `to="peer"`)
			return err == nil && v-base > 4<<20
		}) {
			t.Fatal("node1 never started serving the large layer")
		}
		t0 := time.Now()
		t.Logf("node1 is serving (%.1f MiB sent); restarting node2", (e.metric(0, "sluice_bytes_served_total", `to="peer"`)-base)/(1<<20))
		n2, err := cluster.Start(ctx, sluiceBin, spec2, e.nodes[2].Addr)
		if err != nil {
			t.Fatal(err)
		}
		e.nodes[1] = n2
		t.Cleanup(n2.Stop)
		t.Logf("node2 up after %s", time.Since(t0))
		e.waitAdvertised(1, func(n int) bool { return n >= len(img.Blobs)+1 })
		t.Logf("node2 advertising after %s", time.Since(t0))
		sent := e.metric(0, "sluice_bytes_served_total", `to="peer"`) - base
		if sent >= float64(img.Largest().Size) {
			t.Fatalf("node1 already sent the whole layer (%.0f bytes); nothing to test", sent)
		}
		e.nodes[0].Kill()
		t.Logf("killed node1 after it sent %.1f MiB of %.1f", sent/(1<<20), float64(img.Largest().Size)/(1<<20))
		if err := <-done; err != nil {
			t.Fatalf("pull after node1 died: %v", err)
		}
		e.assertHas(2, img)
		if resumed := e.metric(2, "sluice_resumed_fetches_total"); resumed < 1 {
			t.Fatalf("node3 resumed %.0f fetches, want ≥ 1", resumed)
		}
	})
}
