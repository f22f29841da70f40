package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteHosts_StateOutsideDir: the state file lives in the hosts
// directory, which configure writes as root on the node; a managed path in
// it that leaves the directory (tampered or corrupt) is refused, and no
// file outside the hosts directory is removed or overwritten.
func TestWriteHosts_StateOutsideDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, state string }{
		{"managed dot-dot", `{"managed":["../victim/hosts.toml"]}`},
		{"managed absolute", `{"managed":["VICTIM"]}`},
		{"original dot-dot", `{"managed":["../victim/hosts.toml"],"originals":["../victim/hosts.toml"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			dir := filepath.Join(root, "certs.d")
			victim := filepath.Join(root, "victim", "hosts.toml")
			put(t, root, "victim/hosts.toml", "not sluice's")
			state := strings.ReplaceAll(tc.state, "VICTIM", filepath.ToSlash(victim))
			put(t, dir, filepath.Join(BackupDir, stateFile), state)
			_, err := WriteHosts(t.Context(), HostsOptions{Registries: mustParse(t, "mirrors:\n  docker.io:\n"), HostsDir: dir, Mirror: "http://127.0.0.1:5000"})
			if err == nil || !strings.Contains(err.Error(), "state") {
				t.Errorf("err = %v, want the state file refused", err)
			}
			if _, err := RestoreHosts(t.Context(), dir, false); err == nil {
				t.Error("restore: no error for a state file naming paths outside the hosts directory")
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "not sluice's" {
				t.Errorf("file outside the hosts directory: %q, %v", b, err)
			}
		})
	}
}
