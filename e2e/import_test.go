package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestImport_SinglePlatformTarballIsShared: an air-gap tarball holding one
// platform under an index that names two (docker save from Docker's
// containerd image store) is imported with the `sluice import` binary on
// node 1, which advertises what the tar holds; node 2's containerd pulls
// that platform through its sluice from node 1. The upstream is a closed
// port. --skip-metadata: ctr otherwise fetches every platform's manifest,
// which neither node has (the CRI plugin asks only for its platform).
func TestImport_SinglePlatformTarballIsShared(t *testing.T) {
	e := newEnv(t, 2)
	img := e.image("single:1.0", 31, 1<<20, 256<<10)
	present, err := img.PlatformDigests("linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := img.WriteExport(&buf, testimage.Export{Platforms: []string{"linux/amd64"}, DockerManifest: true}); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "single.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	before := e.advertised(0)
	if out, err := runCmd(t.Context(), sluiceBin, "import", "--store", "containerd://"+e.daemons[0].Socket, tarPath); err != nil {
		t.Fatalf("sluice import: %v\n%s", err, out)
	}
	// A digest key per present blob, plus the tag key.
	e.waitAdvertised(0, func(n int) bool { return n >= before+len(present)+1 })

	if out, err := e.daemons[1].Ctr(t.Context(), "images", "pull", "--hosts-dir", e.hostsDir(1), "--platform", "linux/amd64",
		"--skip-metadata", "--local", "--snapshotter", "native", img.Name); err != nil {
		t.Fatalf("pull through sluice: %v\n%s", err, out)
	}
	content, err := e.daemons[1].Ctr(t.Context(), "content", "ls", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range present {
		if !bytes.Contains(content, []byte(d.String())) {
			t.Fatalf("node2 lacks %s after the pull", d)
		}
	}
	if got := e.metric(1, "sluice_bytes_fetched_total", `from="peer"`); got < float64(img.Largest().Size) {
		t.Fatalf("node2 fetched %.0f bytes from peers, want the image", got)
	}
}
