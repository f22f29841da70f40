package conformance_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// image is what the suite pulls: a two-platform index whose manifests each
// hold a 1 MiB layer, a small one and one with an empty file. Its tag is
// not "latest", which the shipped policy never resolves.
var imageSpec = testimage.Spec{
	Name:       "docker.io/library/conformance:1.0",
	Platforms:  []string{"linux/amd64", "linux/arm64"},
	LayerSizes: []int64{1 << 20, 1000, 0},
	Seed:       7,
}

// repo is the image's repository as a client without ?ns= names it (the
// node's default registry is docker.io).
const repo = "library/conformance"

func TestConformance_OCIDir(t *testing.T) {
	t.Parallel()
	sluice, suite, img, tarPath := setup(t)
	dir := filepath.Join(t.TempDir(), "oci")
	importImage(t, sluice, "oci:"+dir, tarPath)
	node := startNode(t, sluice, "conformance-oci", "oci:"+dir)
	runBranches(t, suite, node, img)
}

func TestConformance_Containerd(t *testing.T) {
	t.Parallel()
	sluice, suite, img, tarPath := setup(t)
	d := ctrtest.Start(t)
	importImage(t, sluice, "containerd://"+d.Socket, tarPath)
	holder := startNode(t, sluice, "conformance-ctrd", "containerd://"+d.Socket)
	// A node never answers a loopback client from its containerd's store:
	// that client is its own containerd, which must go to peers. The suite
	// reaches the containerd node as a peer would, through a second node
	// with an empty embedded store.
	front := startNode(t, sluice, "conformance-front", "oci:"+filepath.Join(t.TempDir(), "oci"), holder.Addr)
	if !cluster.WaitFor(t.Context(), 30*time.Second, func() bool {
		hs, err1 := holder.Status(t.Context())
		fs, err2 := front.Status(t.Context())
		return err1 == nil && err2 == nil && fs.Ready && hs.AdvertisedKeys >= len(img.Blobs)+1
	}) {
		t.Fatal("the containerd node did not advertise the image to the front node")
	}
	runBranches(t, suite, front, img)
}

// setup builds sluice and the suite and writes the image's import tarball.
func setup(t *testing.T) (sluice, suite string, img *testimage.Image, tarPath string) {
	t.Helper()
	sluice, err := cluster.BuildSluice()
	if err != nil {
		t.Fatal(err)
	}
	suite, err = buildSuite()
	if err != nil {
		t.Fatal(err)
	}
	img, err = testimage.Build(imageSpec)
	if err != nil {
		t.Fatal(err)
	}
	tarPath = filepath.Join(t.TempDir(), "image.tar")
	if err := img.WriteTarFile(tarPath); err != nil {
		t.Fatal(err)
	}
	return sluice, suite, img, tarPath
}

// importImage loads the tarball with `sluice import`, as an operator would
// air-gap an image (into containerd it is also labelled and pinned).
func importImage(t *testing.T, sluice, storeURI, tarPath string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), sluice, "import", "--store", storeURI, tarPath).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice import --store %s: %v\n%s", storeURI, err, out)
	}
	if !strings.Contains(string(out), imageSpec.Name) {
		t.Fatalf("sluice import did not report %s:\n%s", imageSpec.Name, out)
	}
}

func startNode(t *testing.T, sluice, name, storeURI string, bootstrap ...string) *cluster.Node {
	t.Helper()
	n, err := cluster.Start(t.Context(), sluice, cluster.Spec{Name: name, IP: "127.0.0.1", Store: storeURI, DataDir: t.TempDir()}, bootstrap...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(n.Log(), 6000))
		}
	})
	return n
}

// runBranches runs each branch of the suite as a subtest; a branch passes
// only on the suite's Pass line, with at least one passed check, and a
// zero exit status.
func runBranches(t *testing.T, suite string, node *cluster.Node, img *testimage.Image) {
	t.Helper()
	data := readOnlyData(img)
	for _, branch := range branches {
		t.Run(branch, func(t *testing.T) {
			res := runSuite(context.WithoutCancel(t.Context()), suite, t.TempDir(), node.RegistryAddr(), repo, branch, data)
			if res.Result != "Pass" || res.Counts["Pass"] == 0 || res.Err != nil {
				t.Fatalf("suite branch %q: result %q, counts %v, exit %v\n%s", branch, res.Result, res.Counts, res.Err, res.Output)
			}
			t.Logf("branch %q: %v", branch, res.Counts)
		})
	}
}

// readOnlyData lists the image's tag, every manifest (the index and each
// platform's) and every other blob (configs and layers).
func readOnlyData(img *testimage.Image) roData {
	var d roData
	d.Tags = []string{imageSpec.Name[strings.LastIndex(imageSpec.Name, ":")+1:]}
	d.Manifests = append(d.Manifests, img.Target.Digest.String())
	isManifest := map[string]bool{img.Target.Digest.String(): true}
	for _, m := range img.Manifests {
		d.Manifests = append(d.Manifests, m.Digest.String())
		isManifest[m.Digest.String()] = true
	}
	for _, dg := range img.Digests() {
		if !isManifest[dg.String()] {
			d.Blobs = append(d.Blobs, dg.String())
		}
	}
	return d
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
