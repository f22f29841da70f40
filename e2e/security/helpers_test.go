// Package security is the end-to-end check of sluice's trust boundaries:
// the libp2p private network (PSK) and mutual TLS on the registry API
// between nodes, with real `sluice run` processes on loopback.
package security

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

var sluiceBin string

func TestMain(m *testing.M) {
	bin, err := cluster.BuildSluice()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = bin
	os.Exit(m.Run())
}

// startNode starts a node with its embedded oci store in a temp dir and
// stops it at the end of the test.
func startNode(t *testing.T, name, ip string, args []string, bootstrap ...string) *cluster.Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	n, err := cluster.Start(t.Context(), sluiceBin, cluster.Spec{
		Name: name, IP: ip, Store: "oci:" + filepath.Join(dir, "oci"), DataDir: dir, Args: args,
	}, bootstrap...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, tail(n.Log(), 4000))
		}
	})
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// addImage builds a small image and writes it into a node's oci store,
// then waits until the node advertised every key.
func addImage(t *testing.T, n *cluster.Node, name string, seed uint64) *testimage.Image {
	t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: name, LayerSizes: []int64{300 << 10, 10 << 10}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ocidir.Open(filepath.Join(n.DataDir, "oci"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteLayout(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if !cluster.WaitFor(t.Context(), 20*time.Second, func() bool {
		s, err := n.Status(t.Context())
		return err == nil && s.AdvertisedKeys >= len(img.Blobs)+1
	}) {
		t.Fatalf("%s did not advertise %s", n.Name, name)
	}
	return img
}

// path returns the request path and query for content of img.
func path(img *testimage.Image, kind, ref string) string {
	r, err := oci.ParseImageName(img.Name)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("/v2/%s/%s/%s?ns=%s", r.Repository, kind, ref, r.Registry)
}

func tagOf(img *testimage.Image) string { return img.Name[strings.LastIndex(img.Name, ":")+1:] }

type result struct {
	status int
	body   []byte
	err    error
}

func get(ctx context.Context, c *http.Client, url string) result {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Accept", strings.Join(oci.ManifestAccept, ", "))
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return result{status: resp.StatusCode, body: b, err: err}
}

// pull fetches the image by tag and every blob by digest through base,
// checking every digest. It fails the test on any error.
func pull(t *testing.T, c *http.Client, base string, img *testimage.Image) {
	t.Helper()
	r := get(t.Context(), c, base+path(img, "manifests", tagOf(img)))
	if r.err != nil || r.status != 200 || digest.FromBytes(r.body) != img.Target.Digest {
		t.Fatalf("pull %s by tag through %s: status %d, err %v, body %.200s", img.Name, base, r.status, r.err, r.body)
	}
	for _, d := range img.Digests() {
		kind := "blobs"
		if store.IsManifestOrIndex(img.Types[d]) {
			kind = "manifests"
		}
		r := get(t.Context(), c, base+path(img, kind, d.String()))
		sum := sha256.Sum256(r.body)
		if r.err != nil || r.status != 200 || "sha256:"+hex.EncodeToString(sum[:]) != d.String() {
			t.Fatalf("pull %s %s through %s: status %d, err %v", kind, d, base, r.status, r.err)
		}
	}
}

// wantNoContent fails unless r is a refusal: a transport error, or a 4xx
// with an OCI JSON error body. It returns the OCI code ("" on a transport
// error).
func wantNoContent(t *testing.T, what string, r result, statuses ...int) string {
	t.Helper()
	if r.err != nil {
		return ""
	}
	code := ociCode(r.body)
	ok := code != ""
	if len(statuses) > 0 {
		ok = ok && containsInt(statuses, r.status)
	}
	if !ok || r.status < 400 || r.status >= 500 {
		t.Fatalf("%s: status %d body %.300q, want a refusal (%v) with an OCI error", what, r.status, r.body, statuses)
	}
	return code
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
