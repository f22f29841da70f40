package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

// pullCell is one image of the matrix and its measured pulls.
type pullCell struct {
	MB, Layers   int
	Static, Peer summary // seconds
	Ratio        summary // peer ÷ static, per round
	Rounds       int
}

// BenchmarkCtrPull is the Spegel benchmark's matrix for issue 14: `ctr
// images pull` (fetch + unpack, native snapshotter) of an image of 10 MB,
// 100 MB and 1 GB total in 1 and 4 layers, on node 2 of two containerd +
// sluice nodes on loopback. Through a peer: node 2's hosts.toml (written by
// config.WriteHosts, as `sluice configure` does) lists its sluice first,
// and node 1's containerd holds the image. Baseline: the same pull by
// node 2 straight from the static registry (the CNCF distribution registry
// of internal/upstreamtest, filesystem storage), the registry node 1
// pulled from. Rounds alternate the order; the image is removed from node
// 2 (ctr images rm --sync: content and snapshots collected) after every
// pull. A peer pull that fetched a blob from the registry fails the run.
//
// SLUICE_BENCH_PULL_MB (default 10,100,1000) and SLUICE_BENCH_PULL_ROUNDS
// (default 5) shrink it. Writes out/ctr-pull.{txt,md,tsv}.
func BenchmarkCtrPull(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("containerd needs root: run the bench harness as root")
	}
	sizes := envInts(b, "SLUICE_BENCH_PULL_MB", []int{10, 100, 1000})
	rounds := envInt(b, "SLUICE_BENCH_PULL_ROUNDS", 5)
	bin := sluiceBin(b)
	ctx := b.Context()
	up := upstreamtest.Start(b, upstreamtest.Options{})
	var daemons []*ctrtest.Daemon
	var nodes []*cluster.Node
	for i := range 2 {
		d := ctrtest.Start(b)
		spec := cluster.Spec{Name: fmt.Sprintf("bench%d", i+1), IP: fmt.Sprintf("127.0.0.%d", 41+i),
			Store: "containerd://" + d.Socket, DataDir: filepath.Join(d.Dir, "sluice")}
		var boot []string
		if i > 0 {
			boot = []string{nodes[0].Addr}
		}
		n, err := cluster.Start(ctx, bin, spec, boot...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(n.Stop)
		daemons, nodes = append(daemons, d), append(nodes, n)
	}
	if !cluster.WaitFor(ctx, 30*time.Second, func() bool {
		st, err := nodes[1].Status(ctx)
		return err == nil && st.Ready && st.Peers >= 1
	}) {
		b.Fatal("the nodes did not find each other")
	}
	staticHosts := filepath.Join(daemons[1].Dir, "certs.d-static")
	if err := os.MkdirAll(filepath.Join(staticHosts, up.Host), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staticHosts, up.Host, "hosts.toml"), []byte(fmt.Sprintf("server = %q\n", up.URL)), 0o644); err != nil {
		b.Fatal(err)
	}
	regs, _, err := config.ParseRegistries("bench.yaml", []byte("mirrors:\n  \""+up.Host+"\":\n"))
	if err != nil {
		b.Fatal(err)
	}
	peerHosts := filepath.Join(daemons[1].Dir, "certs.d-peer")
	if _, err := config.WriteHosts(ctx, config.HostsOptions{Registries: regs, HostsDir: peerHosts, Mirror: nodes[1].RegistryURL()}); err != nil {
		b.Fatal(err)
	}
	node1Hosts := filepath.Join(daemons[0].Dir, "certs.d-static")
	if err := os.CopyFS(node1Hosts, os.DirFS(staticHosts)); err != nil {
		b.Fatal(err)
	}

	var cells []pullCell
	var log strings.Builder
	fmt.Fprintf(&log, "# ctr pull through a peer vs the static registry; %d rounds; %s\n# MB layers round static_s peer_s ratio\n", rounds, machine())
	for _, mb := range sizes {
		for _, layers := range []int{1, 4} {
			c := pullCell{MB: mb, Layers: layers, Rounds: rounds}
			ref := fmt.Sprintf("%s/bench/img-%dmb-%dl:1.0", up.Host, mb, layers)
			ls := make([]int64, layers)
			for i := range ls {
				ls[i] = int64(mb) * 1_000_000 / int64(layers)
			}
			img, err := testimage.Build(testimage.Spec{Name: ref, LayerSizes: ls, Seed: uint64(mb*10 + layers)})
			if err != nil {
				b.Fatal(err)
			}
			if err := up.Push(ctx, fmt.Sprintf("bench/img-%dmb-%dl", mb, layers), "1.0", img); err != nil {
				b.Fatal(err)
			}
			repo := fmt.Sprintf("bench/img-%dmb-%dl", mb, layers)
			paths := []string{"/v2/" + repo + "/manifests/1.0?ns=" + up.Host}
			for _, d := range img.Digests() {
				kind := "blobs"
				if mt := img.Types[d]; strings.Contains(mt, "manifest") || strings.Contains(mt, "index") {
					kind = "manifests"
				}
				paths = append(paths, "/v2/"+repo+"/"+kind+"/"+d.String()+"?ns="+up.Host)
			}
			img = nil //nolint:ineffassign,wastedassign // let the GC have the layers
			if _, err := daemons[0].Ctr(ctx, "images", "pull", "--hosts-dir", node1Hosts, "--local", "--snapshotter", "native", ref); err != nil {
				b.Fatal(err)
			}
			waitPeerServes(ctx, b, nodes[1].RegistryURL(), paths)
			pull := func(hosts string, peer bool) float64 {
				b.Helper()
				blobsBefore := up.Counter.Kind(upstreamtest.KindBlob).Requests
				start := time.Now()
				if _, err := daemons[1].Ctr(ctx, "images", "pull", "--hosts-dir", hosts, "--local", "--snapshotter", "native", ref); err != nil {
					b.Fatal(err)
				}
				d := time.Since(start).Seconds()
				if n := up.Counter.Kind(upstreamtest.KindBlob).Requests - blobsBefore; peer && n > 0 {
					b.Fatalf("pull of %s through the peer fetched %d blobs from the registry", ref, n)
				}
				removeImage(ctx, b, daemons[1], ref)
				return d
			}
			pull(staticHosts, false) // page cache warm on both sides
			pull(peerHosts, true)
			var ts, tp, rs []float64
			for r := range rounds {
				var s, p float64
				if r%2 == 0 {
					s, p = pull(staticHosts, false), pull(peerHosts, true)
				} else {
					p, s = pull(peerHosts, true), pull(staticHosts, false)
				}
				ts, tp, rs = append(ts, s), append(tp, p), append(rs, p/s)
				fmt.Fprintf(&log, "%d %d %d %.3f %.3f %.3f\n", mb, layers, r, s, p, p/s)
			}
			c.Static, c.Peer, c.Ratio = summarize(ts), summarize(tp), summarize(rs)
			b.ReportMetric(c.Ratio.Med, fmt.Sprintf("ratio-%dMB-%dl", mb, layers))
			cells = append(cells, c)
			if _, err := daemons[0].Ctr(ctx, "images", "rm", "--sync", ref); err != nil {
				b.Fatal(err)
			}
		}
	}
	var md, tsv strings.Builder
	md.WriteString("| image | layers | rounds | static registry s | through a peer s | peer ÷ static, median (range) |\n|---|---|---|---|---|---|\n")
	tsv.WriteString("mb\tlayers\tstatic_s\tpeer_s\tratio\n")
	for _, c := range cells {
		fmt.Fprintf(&md, "| %d MB | %d | %d | %s | %s | %s |\n", c.MB, c.Layers, c.Rounds, c.Static.format(2), c.Peer.format(2), c.Ratio.format(2))
		fmt.Fprintf(&tsv, "%d\t%d\t%.4f\t%.4f\t%.4f\n", c.MB, c.Layers, c.Static.Med, c.Peer.Med, c.Ratio.Med)
		fmt.Fprintf(&log, "%d MB × %d: ratio %s\n", c.MB, c.Layers, c.Ratio.format(3))
	}
	writeOut(b, "ctr-pull.txt", log.String())
	writeOut(b, "ctr-pull.md", md.String())
	writeOut(b, "ctr-pull.tsv", tsv.String())
	if err := plotPullTimes(filepath.Join(outDir(b), "pull-time.png"), cells); err != nil {
		b.Fatal(err)
	}
}

// removeImage deletes ref from d and waits for the garbage collector
// (content and snapshots), so the next pull fetches everything again.
func removeImage(ctx context.Context, tb testing.TB, d *ctrtest.Daemon, ref string) {
	tb.Helper()
	if _, err := d.Ctr(ctx, "images", "rm", "--sync", ref); err != nil {
		tb.Fatal(err)
	}
	out, err := d.Ctr(ctx, "content", "ls", "--quiet")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") { // ctr's warnings share the output
		if strings.HasPrefix(l, "sha256:") {
			tb.Fatalf("content left after removing %s:\n%s", ref, out)
		}
	}
}

// waitPeerServes polls HEAD of every path on node 2's sluice until each
// answers 200: node 1 advertised the image and node 2 finds it.
func waitPeerServes(ctx context.Context, tb testing.TB, base string, paths []string) {
	tb.Helper()
	var last string
	ok := cluster.WaitFor(ctx, 60*time.Second, func() bool {
		for _, p := range paths {
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, base+p, nil)
			if err != nil {
				tb.Fatal(err)
			}
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				last = err.Error()
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				last = p + ": " + resp.Status
				return false
			}
		}
		return true
	})
	if !ok {
		tb.Fatalf("node 2 does not find the image on node 1: %s", last)
	}
}
