package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// demoCmd runs a local three-node cluster on 127.0.0.1-3, each node with
// its own embedded store, generates an image into node 1 while it runs,
// pulls it through node 3 (with a real containerd and ctr when they are
// built in ./bin, else with containerd's registry client in process) and
// reports who served which bytes. The "upstream" registry is a counting
// server on loopback that must see no request.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "keep the demo directory")
	layerMiB := fs.Int("layer-mib", 32, "size of the largest layer in MiB")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-demo")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	// The upstream registry: counts requests, serves nothing.
	var upstreamHits atomic.Int64
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		upstreamHits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(up) }()
	defer upSrv.Close()
	registryHost := up.Addr().String()
	imageName := registryHost + "/demo/app:1.0"

	say("sluice demo — three nodes on loopback, one image, no upstream")
	say("  directory: %s", dir)
	say("  upstream registry (counts requests, serves nothing): %s", registryHost)

	var nodes []*cluster.Node
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		nd := filepath.Join(dir, fmt.Sprintf("node%d", i))
		spec := cluster.Spec{Name: fmt.Sprintf("node%d", i), IP: fmt.Sprintf("127.0.0.%d", i),
			Store: "oci:" + filepath.Join(nd, "oci"), DataDir: nd}
		var boot []string
		if len(nodes) > 0 {
			boot = []string{nodes[0].Addr}
		}
		n, err := cluster.Start(ctx, self, spec, boot...)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		say("  %s: registry %s, p2p %s", spec.Name, n.RegistryURL(), n.Addr)
	}
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil || !st.Ready {
				return false
			}
		}
		return true
	}) {
		return fmt.Errorf("nodes did not find each other within 20s:\n%s", nodes[2].Log())
	}
	say("  all nodes see peers on the DHT")

	img, err := testimage.Build(testimage.Spec{Name: imageName, Platforms: []string{"linux/amd64", "linux/arm64"},
		LayerSizes: []int64{int64(*layerMiB) << 20, 4 << 20, 64 << 10}, Seed: 2026})
	if err != nil {
		return err
	}
	var total int64
	for _, b := range img.Blobs {
		total += int64(len(b))
	}
	st1, err := ocidir.Open(filepath.Join(dir, "node1", "oci"), nil)
	if err != nil {
		return err
	}
	if err := img.WriteLayout(ctx, st1); err != nil {
		return err
	}
	say("  generated %s into node1 only: %d blobs, %.1f MiB (two platforms)", imageName, len(img.Blobs), float64(total)/(1<<20))
	if !cluster.WaitFor(ctx, 20*time.Second, func() bool {
		st, err := nodes[0].Status(ctx)
		return err == nil && st.AdvertisedKeys >= len(img.Blobs)+1
	}) {
		return fmt.Errorf("node1 did not advertise the image:\n%s", nodes[0].Log())
	}
	say("  node1 advertised %d keys (every digest and the tag)", len(img.Blobs)+1)

	start := time.Now()
	var how string
	if bin, ok := ctrtest.Built(); ok {
		how = "ctr images pull (real containerd) through node3's hosts.toml"
		if err := pullWithContainerd(ctx, bin, dir, nodes[2], registryHost, img, stdout); err != nil {
			return err
		}
	} else {
		how = "containerd's registry client (in process) through node3"
		say("  no containerd built in ./bin: pulling with containerd's registry client (make containerd for the real daemon)")
		if err := pullInProcess(ctx, nodes[2], img); err != nil {
			return err
		}
	}
	took := time.Since(start)

	say("")
	say("pulled %s via %s in %s; every digest verified", imageName, how, took.Round(time.Millisecond))
	say("%-7s %18s %18s %18s", "node", "served to peers", "served locally", "fetched from peers")
	for _, n := range nodes {
		peer, _ := n.Metric(ctx, "sluice_bytes_served_total", `to="peer"`)
		local, _ := n.Metric(ctx, "sluice_bytes_served_total", `to="local"`)
		fetched, _ := n.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`)
		say("%-7s %18s %18s %18s", n.Name, mib(peer), mib(local), mib(fetched))
	}
	say("upstream registry requests: %d", upstreamHits.Load())
	if upstreamHits.Load() != 0 {
		return fmt.Errorf("the upstream was contacted %d times", upstreamHits.Load())
	}
	return nil
}

func mib(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 2, 64) + " MiB" }
