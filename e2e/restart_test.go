package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/ctrtest"
)

// TestContainerdRestart_NewImagesAdvertised: while node1's containerd is
// away from its socket, an image lands in its store (here: imported by the
// same containerd, on the same root, serving another socket), so sluice sees
// no event for it. When containerd is back, sluice's event stream
// reconnects and must rescan: the image is advertised within seconds, not
// at the next reprovide 10 minutes later, and node2 pulls it through node1.
func TestContainerdRestart_NewImagesAdvertised(t *testing.T) {
	e := newEnv(t, 2)
	ctx := t.Context()
	img := e.image("after-restart:1", 31, 1<<20, 4096)
	tarPath := e.tarOf(img)
	bin, err := ctrtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}

	e.daemons[0].Stop()
	side := filepath.Join(e.daemons[0].Dir, "side")
	if err := os.MkdirAll(side, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.daemons[0].Root, filepath.Join(side, "root")); err != nil {
		t.Fatal(err)
	}
	tmp, err := ctrtest.StartIn(bin, side)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(ctx, sluiceBin, "import", "--store", "containerd://"+tmp.Socket, tarPath)
	tmp.Stop()
	if err != nil {
		t.Fatalf("sluice import: %v\n%s", err, out)
	}

	d, err := ctrtest.StartIn(bin, e.daemons[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	start := time.Now()
	want := len(img.Blobs) + 1
	e.waitAdvertised(0, func(n int) bool { return n >= want })
	t.Logf("advertised %s after containerd came back", time.Since(start).Round(time.Millisecond))
	if err := e.pull(ctx, 1, img.Name); err != nil {
		t.Fatal(err)
	}
	e.assertHas(1, img)
}
