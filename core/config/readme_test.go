package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADME_MatchesGolden: every hosts.toml shown in README.md is, byte for
// byte, one of the golden outputs, so the documentation says exactly what
// sluice writes.
func TestREADME_MatchesGolden(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "```toml\n")[1:]
	if len(blocks) < 8 {
		t.Fatalf("README.md shows %d hosts.toml files, want the k3s/RKE2 examples", len(blocks))
	}
	for _, blk := range blocks {
		body, _, _ := strings.Cut(blk, "```")
		name, content, _ := strings.Cut(body, "\n")
		rel := strings.TrimPrefix(name, "# ")
		matches, _ := filepath.Glob(filepath.Join("testdata", "golden", "*", "expected", filepath.FromSlash(rel)))
		found := false
		for _, m := range matches {
			if g, err := os.ReadFile(m); err == nil && string(g) == content {
				found = true
			}
		}
		if !found {
			t.Errorf("README.md block %s matches no golden output:\n%s", rel, content)
		}
	}
}
