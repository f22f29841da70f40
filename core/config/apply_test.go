package config

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, s string) *Registries {
	t.Helper()
	reg, _, err := ParseRegistries("registries.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func put(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWriteHosts_BackupRestore: an existing certs.d tree survives
// configure, reconfigure and restore, byte for byte.
func TestWriteHosts_BackupRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	original := map[string]string{
		"docker.io/hosts.toml":            "server = \"https://registry-1.docker.io\"\n# operator's own\n",
		"docker.io/ca.crt":                "CERT",
		"quay.io/hosts.toml":              "server = \"https://quay.io\"\n",
		"registry.local:5000/client.cert": "C",
	}
	for rel, c := range original {
		put(t, dir, rel, c)
	}
	opts := HostsOptions{
		Registries: mustParse(t, "mirrors:\n  docker.io:\n  registry.k8s.io:\n"),
		HostsDir:   dir, Mirror: "http://127.0.0.1:5000",
	}

	// Dry run: a diff, nothing on disk.
	dry := opts
	dry.DryRun = true
	ch, err := WriteHosts(t.Context(), dry)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--- a/docker.io/hosts.toml", "-# operator's own", "+[host.\"http://127.0.0.1:5000\"]", "--- /dev/null\n+++ b/registry.k8s.io/hosts.toml"} {
		if !strings.Contains(ch.Diff, want) {
			t.Errorf("dry-run diff lacks %q:\n%s", want, ch.Diff)
		}
	}
	if got := readTree(t, dir); !maps.Equal(got, original) {
		t.Fatalf("dry run changed the tree: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, BackupDir)); !os.IsNotExist(err) {
		t.Fatalf("dry run created the backup dir: %v", err)
	}

	ch, err = WriteHosts(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Written, []string{"docker.io/hosts.toml", "registry.k8s.io/hosts.toml"}) ||
		!slices.Equal(ch.BackedUp, []string{"docker.io/hosts.toml"}) {
		t.Errorf("changes = %+v", ch)
	}
	got := readTree(t, dir)
	if got["docker.io/ca.crt"] != "CERT" || got["quay.io/hosts.toml"] != original["quay.io/hosts.toml"] {
		t.Errorf("files sluice does not manage were touched: %v", got)
	}
	if !strings.Contains(got["docker.io/hosts.toml"], "127.0.0.1:5000") {
		t.Errorf("docker.io/hosts.toml not written:\n%s", got["docker.io/hosts.toml"])
	}
	st, err := os.Stat(filepath.Join(dir, "docker.io/hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}

	// Same input: nothing changes, not even the file's mtime.
	time.Sleep(10 * time.Millisecond)
	ch, err = WriteHosts(t.Context(), opts)
	if err != nil || !ch.Empty() || len(ch.Unchanged) != 2 {
		t.Fatalf("second run: %+v, %v", ch, err)
	}
	st2, _ := os.Stat(filepath.Join(dir, "docker.io/hosts.toml"))
	if !st2.ModTime().Equal(st.ModTime()) {
		t.Error("second run rewrote an unchanged file")
	}

	// docker.io dropped from registries.yaml: its original comes back;
	// registry.k8s.io stays sluice's and the first backup is kept.
	opts.Registries = mustParse(t, "mirrors:\n  registry.k8s.io:\n")
	ch, err = WriteHosts(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Written, []string{"docker.io/hosts.toml"}) || len(ch.BackedUp) != 0 {
		t.Errorf("changes = %+v", ch)
	}
	if got := readTree(t, dir)["docker.io/hosts.toml"]; got != original["docker.io/hosts.toml"] {
		t.Errorf("docker.io/hosts.toml = %q, want the original", got)
	}

	// Back to both, then restore: exactly the original tree.
	opts.Registries = mustParse(t, "mirrors:\n  docker.io:\n  registry.k8s.io:\n")
	if _, err := WriteHosts(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	ch, err = RestoreHosts(t.Context(), dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Written, []string{"docker.io/hosts.toml"}) || !slices.Equal(ch.Removed, []string{"registry.k8s.io/hosts.toml"}) {
		t.Errorf("restore changes = %+v", ch)
	}
	if got := readTree(t, dir); !maps.Equal(got, original) {
		t.Errorf("after restore:\n%v\nwant:\n%v", got, original)
	}
	for _, gone := range []string{BackupDir, "registry.k8s.io"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", gone, err)
		}
	}
	// Restoring again is a no-op.
	if ch, err := RestoreHosts(t.Context(), dir, false); err != nil || !ch.Empty() {
		t.Errorf("second restore: %+v, %v", ch, err)
	}
}

func TestWriteHosts_Refused(t *testing.T) {
	t.Parallel()
	reg := mustParse(t, "mirrors:\n  docker.io:\n")
	tests := []struct {
		name string
		opts HostsOptions
		msg  string
	}{
		{"no dir", HostsOptions{Registries: reg, Mirror: "http://127.0.0.1:5000"}, "no hosts directory"},
		{"no registries", HostsOptions{HostsDir: t.TempDir(), Mirror: "http://127.0.0.1:5000"}, "no registries"},
		{"bad mirror", HostsOptions{Registries: reg, HostsDir: t.TempDir(), Mirror: "127.0.0.1:5000"}, "mirror URL"},
	}
	for _, tt := range tests {
		if _, err := WriteHosts(t.Context(), tt.opts); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.msg)
		}
	}
}

func TestHostDirName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"*": "_default", "docker.io": "docker.io", "registry.local:5000": "registry.local_5000_",
		"[::1]:5000": "[::1]_5000_", "[::1]": "[::1]",
	} {
		if got := HostDirName(in); got != want {
			t.Errorf("HostDirName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"*": "", "docker.io": "https://registry-1.docker.io", "localhost:5000": "http://localhost:5000",
		"127.0.0.1:443": "https://127.0.0.1:443", "reg.local:5000": "https://reg.local:5000",
	} {
		if got := UpstreamURL(in); got != want {
			t.Errorf("UpstreamURL(%q) = %q, want %q", in, got, want)
		}
	}
}
