// Package ops checks what operators see and rely on, on real sluice
// processes with embedded oci stores on 127.0.0.x (no containerd): the
// status page in a headless browser, metrics after a peer pull, and the
// graceful shutdown.
package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

var sluiceBin string

func TestMain(m *testing.M) {
	var err error
	if sluiceBin, err = cluster.BuildSluice(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// twoNodes starts A (holding img in its oci store) and B (empty,
// bootstrapped from A) on ipA and ipB; argsA are A's extra flags.
func twoNodes(t *testing.T, ipA, ipB string, img *testimage.Image, argsA ...string) (a, b *cluster.Node) {
	t.Helper()
	dir := t.TempDir()
	da := filepath.Join(dir, "a")
	st, err := ocidir.Open(filepath.Join(da, "oci"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteLayout(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	start := func(name, ip, d string, args []string, boot ...string) *cluster.Node {
		n, err := cluster.Start(t.Context(), sluiceBin, cluster.Spec{Name: name, IP: ip, Store: "oci:" + filepath.Join(d, "oci"),
			DataDir: d, Args: args}, boot...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log (tail):\n%s", name, tail(n.Log(), 5000))
			}
			if !n.Exited() {
				n.Kill()
			}
		})
		return n
	}
	a = start("node-a", ipA, da, argsA)
	b = start("node-b", ipB, filepath.Join(dir, "b"), nil, a.Addr)
	ctx := t.Context()
	if !cluster.WaitFor(ctx, 30*time.Second, func() bool {
		sa, errA := a.Status(ctx)
		sb, errB := b.Status(ctx)
		return errA == nil && errB == nil && sa.Ready && sb.Ready && sa.AdvertisedKeys >= len(img.Digests())
	}) {
		t.Fatal("nodes did not become ready or A did not advertise its image")
	}
	return a, b
}

// get fetches path from base and checks the body against want (when
// given); it returns the status and the body length.
func get(ctx context.Context, base, path string, want digest.Digest) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	v := want.Algorithm().Digester()
	var w io.Writer = io.Discard
	if want != "" {
		w = v.Hash()
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return resp.StatusCode, n, err
	}
	if resp.StatusCode == 200 && want != "" && v.Digest() != want {
		return resp.StatusCode, n, fmt.Errorf("%s: body digest %s, want %s", path, v.Digest(), want)
	}
	return resp.StatusCode, n, nil
}

// pullThrough pulls img from b's registry as the local client does (tag,
// then every blob and manifest by digest); b has none of it, so every
// answer comes through a peer.
func pullThrough(t *testing.T, b *cluster.Node, img *testimage.Image) {
	t.Helper()
	ctx := t.Context()
	ref := strings.SplitN(img.Name, "/", 2)[1]
	repo, tag, _ := strings.Cut(ref, ":")
	reg := strings.SplitN(img.Name, "/", 2)[0]
	if code, _, err := get(ctx, b.RegistryURL(), "/v2/"+repo+"/manifests/"+tag+"?ns="+reg, img.Target.Digest); err != nil || code != 200 {
		t.Fatalf("manifest by tag through B: %d %v", code, err)
	}
	for _, d := range img.Digests() {
		kind := "blobs"
		if store.IsManifestOrIndex(img.Types[d]) {
			kind = "manifests"
		}
		if code, _, err := get(ctx, b.RegistryURL(), "/v2/"+repo+"/"+kind+"/"+d.String()+"?ns="+reg, d); err != nil || code != 200 {
			t.Fatalf("%s %s through B: %d %v", kind, d, code, err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
