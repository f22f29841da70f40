package config

import (
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/golden expectations")

// goldenCase is testdata/golden/<case>/case.yaml (optional).
type goldenCase struct {
	Mirror                 string `json:"mirror"`
	DisableDefaultEndpoint bool   `json:"disable_default_endpoint"`
	DialTimeout            string `json:"dial_timeout"`
}

func loadGoldenCase(t *testing.T, dir string) goldenCase {
	t.Helper()
	gc := goldenCase{Mirror: "http://127.0.0.1:5000"}
	b, err := os.ReadFile(filepath.Join(dir, "case.yaml"))
	if err == nil {
		if err := yaml.UnmarshalStrict(b, &gc); err != nil {
			t.Fatalf("case.yaml: %v", err)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return gc
}

// readTree returns every file under dir (relative slash paths), skipping
// BackupDir. A missing dir is an empty tree.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == dir {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == BackupDir {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGolden runs every testdata/golden/<case>: registries.yaml (+ case.yaml
// flags) through ParseRegistries and WriteHosts into an empty directory and
// compares the tree with <case>/expected/, the mirrors list with
// mirrors.json and the warnings with warnings.txt. -update rewrites them.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*/registries.yaml")
	if err != nil || len(cases) < 10 {
		t.Fatalf("golden cases: %d found, err %v", len(cases), err)
	}
	for _, c := range cases {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			gc := loadGoldenCase(t, dir)
			data, err := os.ReadFile(c)
			if err != nil {
				t.Fatal(err)
			}
			reg, warnings, err := ParseRegistries("registries.yaml", data)
			if err != nil {
				t.Fatal(err)
			}
			var timeout time.Duration
			if gc.DialTimeout != "" {
				if timeout, err = time.ParseDuration(gc.DialTimeout); err != nil {
					t.Fatal(err)
				}
			}
			hosts := t.TempDir()
			ch, err := WriteHosts(t.Context(), HostsOptions{
				Registries: reg, HostsDir: hosts, Mirror: gc.Mirror,
				DisableDefaultEndpoint: gc.DisableDefaultEndpoint, DialTimeout: timeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := readTree(t, hosts)
			if len(ch.Written) != len(got) {
				t.Errorf("Changes.Written = %v, tree has %d files", ch.Written, len(got))
			}
			mirrors, _ := json.Marshal(reg.Mirrors())
			var ws []string
			for _, w := range append(warnings, ch.Warnings...) {
				ws = append(ws, w.String())
			}
			gotWarnings := strings.Join(ws, "\n")
			if *update {
				writeTree(t, filepath.Join(dir, "expected"), got)
				writeGolden(t, filepath.Join(dir, "mirrors.json"), string(mirrors)+"\n")
				writeGolden(t, filepath.Join(dir, "warnings.txt"), gotWarnings)
				return
			}
			want := readTree(t, filepath.Join(dir, "expected"))
			for rel, w := range want {
				if got[rel] != w {
					t.Errorf("%s:\n--- got\n%s\n--- want\n%s", rel, got[rel], w)
				}
			}
			for rel := range got {
				if _, ok := want[rel]; !ok {
					t.Errorf("unexpected file %s:\n%s", rel, got[rel])
				}
			}
			if w := readGolden(t, filepath.Join(dir, "mirrors.json")); w != string(mirrors)+"\n" {
				t.Errorf("Mirrors() = %s, want %s", mirrors, w)
			}
			if w := readGolden(t, filepath.Join(dir, "warnings.txt")); w != gotWarnings {
				t.Errorf("warnings:\n%s\nwant:\n%s", gotWarnings, w)
			}
			// A second run with the same input changes nothing.
			again, err := WriteHosts(t.Context(), HostsOptions{
				Registries: reg, HostsDir: hosts, Mirror: gc.Mirror,
				DisableDefaultEndpoint: gc.DisableDefaultEndpoint, DialTimeout: timeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !again.Empty() || again.Diff != "" {
				t.Errorf("second run changed %+v", again)
			}
		})
	}
}

func writeGolden(t *testing.T, path, content string) {
	t.Helper()
	if content == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
