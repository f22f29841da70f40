package ops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestPeerPull_StatusAndMetrics: after B pulled an image through A,
// B's /metrics counts the requests with source="peer" and the bytes it
// fetched, A's counts the bytes it served to a peer, and B's status page,
// loaded in a headless Chromium, shows that A served them and that the
// resolve policy allowed it.
func TestPeerPull_StatusAndMetrics(t *testing.T) {
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/status:1.0", LayerSizes: []int64{2 << 20, 4 << 10}, Seed: 91})
	if err != nil {
		t.Fatal(err)
	}
	a, b := twoNodes(t, "127.0.0.91", "127.0.0.92", img)
	pullThrough(t, b, img)
	var total int64
	for _, blob := range img.Blobs {
		total += int64(len(blob))
	}

	t.Run("metrics", func(t *testing.T) {
		ctx := t.Context()
		for _, c := range []struct {
			node   string
			metric string
			labels []string
			min    float64
		}{
			{"B", "sluice_mirror_requests_total", []string{`source="peer"`, `result="ok"`}, float64(len(img.Blobs) + 1)},
			{"B", "sluice_bytes_fetched_total", []string{`from="peer"`}, float64(total)},
			{"B", "sluice_bytes_served_total", []string{`to="local"`}, float64(total)},
			{"A", "sluice_bytes_served_total", []string{`to="peer"`}, float64(total)},
			{"A", "sluice_mirror_requests_total", []string{`source="local"`, `result="ok"`}, float64(len(img.Blobs) + 1)},
		} {
			n := b
			if c.node == "A" {
				n = a
			}
			v, err := n.Metric(ctx, c.metric, c.labels...)
			if err != nil || v < c.min {
				t.Errorf("%s %s%v = %v (err %v), want at least %v", c.node, c.metric, c.labels, v, err, c.min)
			}
		}
	})

	t.Run("browser", func(t *testing.T) {
		chromium, err := exec.LookPath("chromium")
		if err != nil {
			t.Fatalf("chromium not found (%v): install Debian's chromium package (.ci/run does)", err)
		}
		out := t.ArtifactDir()
		if d := os.Getenv("TEST_OUTPUT"); d != "" {
			out = d
		}
		shot := filepath.Join(out, "status-page.png")
		dom := runChromium(t, chromium, "--dump-dom", b.MetricsURL()+"/")
		if err := os.WriteFile(filepath.Join(out, "status-page.html"), dom, 0o644); err != nil {
			t.Fatal(err)
		}
		page := string(dom)
		for _, want := range []string{
			`id="node-name">node-b<`,
			`class="serving-peer">` + a.ID + `<`, // the serving peer, per request
			"resolve: allow",                     // the policy decision
			a.ID,                                 // in the peer table too
		} {
			if !strings.Contains(page, want) {
				t.Errorf("rendered DOM lacks %q", want)
			}
		}
		runChromium(t, chromium, "--screenshot="+shot, "--window-size=1400,1100", b.MetricsURL()+"/")
		if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
			t.Fatalf("screenshot %s: %v", shot, err)
		}
		t.Logf("screenshot: %s", shot)
	})
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 3000))
	}
	return b
}
