package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// readmePrivateRule is the private/ serve-deny example of
// policies/README.md, read from the README so the tested rule is the one
// operators copy.
func readmePrivateRule(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "policies", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```rego\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if strings.Contains(block, "package sluice.serve") && strings.Contains(block, `"private/"`) {
			var out strings.Builder
			for _, line := range strings.Split(block, "\n") {
				out.WriteString(strings.TrimPrefix(line, "  ") + "\n")
			}
			return out.String()
		}
	}
	t.Fatal("policies/README.md has no private/ serve-deny example")
	return ""
}

// TestSource_ServeJudgedOnWhatTheNodeKnows: node1's containerd holds
// images imported with `sluice import` (which labels their content with
// its registry and repository). Its serve policy is the shipped one with
// mirrors [registry A] plus the README's private/ rule. A peer naming a
// shared registry and a public repository for content node1 knows only
// under an unshared registry, or under private/, is refused; a real
// containerd on node2 cannot pull a private index by naming it as another
// repository's digest, and still pulls the public image.
func TestSource_ServeJudgedOnWhatTheNodeKnows(t *testing.T) {
	regA := closedAddr(t) // shared
	regB := closedAddr(t) // not in mirrors
	yaml := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(yaml, []byte("mirrors:\n  \""+regA+"\":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := policyDir(t, map[string]string{"private.rego": readmePrivateRule(t)})
	args := []string{"--registries", yaml, "--policy", pol}
	e := newEnv(t, 2, args, args)
	build := func(name string, seed uint64) *testimage.Image {
		img, err := testimage.Build(testimage.Spec{Name: name, Platforms: []string{"linux/amd64"}, LayerSizes: []int64{256 << 10}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	secret := build(regB+"/secret/app:1.0", 61)
	private := build(regA+"/private/app:1.0", 62)
	public := build(regA+"/e2e/alpine:3.20", 63)
	e.importKeys(0, secret, 0) // registry B: nothing is advertised
	e.importTo(0, private)
	e.importTo(0, public)

	get := func(path string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.nodes[0].RegistryURL()+path, nil)
		req.Header.Set(registry.PeerHeader, "e2e-peer")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	asAlpine := func(kind, d string, ns string) string {
		return "/v2/e2e/alpine/" + kind + "/" + d + "?ns=" + ns
	}
	for _, tt := range []struct {
		name, path string
		want       int
	}{
		{"unshared registry's layer named as registry A's alpine", asAlpine("blobs", secret.Layers[0].Digest.String(), regA), 403},
		{"unshared registry's manifest named as registry A's alpine", asAlpine("manifests", secret.Manifests[0].Digest.String(), regA), 403},
		{"private layer named as alpine", asAlpine("blobs", private.Layers[0].Digest.String(), regA), 403},
		{"private index named as alpine", asAlpine("manifests", private.Target.Digest.String(), regA), 403},
		{"public layer", asAlpine("blobs", public.Layers[0].Digest.String(), regA), 200},
	} {
		if got := get(tt.path); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}

	// A real pull on node2 of the private index under the public name.
	hosts := e.hostsDirFor(1, regA)
	ctx, cancel := context.WithTimeout(t.Context(), failTimeout)
	defer cancel()
	disguised := regA + "/e2e/alpine@" + private.Target.Digest.String()
	if err := e.pullWith(ctx, 1, hosts, disguised); err == nil {
		t.Fatalf("node2 pulled %s: node1 served private content under another repository", disguised)
	}
	if err := e.pullWith(t.Context(), 1, hosts, public.Name); err != nil {
		t.Fatal(err)
	}
	e.assertHas(1, public)
	if denied := e.denials(0, "serve"); denied < 1 {
		t.Fatalf("node1 denied %.0f serve decisions", denied)
	}
}
