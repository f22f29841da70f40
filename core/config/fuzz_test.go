package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParseRegistries: any input is parsed or refused without panicking;
// what is accepted renders to hosts.toml files that are valid TOML.
func FuzzParseRegistries(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/golden/*/registries.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, _, err := ParseRegistries("fuzz.yaml", data)
		if err != nil {
			return
		}
		m := reg.Mirrors()
		if !slices.IsSorted(m) {
			t.Fatalf("Mirrors() not sorted: %v", m)
		}
		for _, disable := range []bool{false, true} {
			files, _, err := RenderHosts(HostsOptions{Registries: reg, Mirror: "http://127.0.0.1:5000", DisableDefaultEndpoint: disable})
			if err != nil {
				t.Fatalf("accepted file does not render: %v", err)
			}
			if len(files) != len(m) {
				t.Fatalf("%d files for %d mirrors", len(files), len(m))
			}
			for name, b := range files {
				var v map[string]any
				if err := toml.Unmarshal(b, &v); err != nil {
					t.Fatalf("%s is not valid TOML: %v\n%s", name, err, b)
				}
			}
		}
	})
}
