package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runConfigure(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := configureCmd(t.Context(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestConfigureCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hosts := filepath.Join(dir, "certs.d")
	regFile := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(regFile, []byte("mirrors:\n  docker.io:\n    endpoint: [https://mirror.example.com]\n    endpoints: typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(hosts, "docker.io", "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(orig), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orig, []byte("server = \"https://registry-1.docker.io\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--registries", regFile, "--hosts-dir", hosts, "--mirror", "http://127.0.0.1:5123"}

	out, errOut, err := runConfigure(t, append(base, "--dry-run")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "+[host.\"http://127.0.0.1:5123\"]") || !strings.Contains(out, "--- a/docker.io/hosts.toml") {
		t.Errorf("dry-run output lacks the diff:\n%s", out)
	}
	if !strings.Contains(errOut, `warning: `+regFile+`: mirrors."docker.io".endpoints: unknown key`) {
		t.Errorf("stderr lacks the unknown-key warning:\n%s", errOut)
	}
	if b, _ := os.ReadFile(orig); !strings.HasPrefix(string(b), "server") {
		t.Fatalf("dry run wrote %s", orig)
	}

	out, _, err = runConfigure(t, append(base, "--disable-default-endpoint")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "backed up "+orig) || !strings.Contains(out, "wrote "+orig) {
		t.Errorf("output:\n%s", out)
	}
	b, _ := os.ReadFile(orig)
	if !strings.Contains(string(b), "server = 'https://mirror.example.com/v2'") || strings.Contains(string(b), "registry-1") {
		t.Errorf("hosts.toml with --disable-default-endpoint:\n%s", b)
	}

	out, _, err = runConfigure(t, append(base, "--disable-default-endpoint")...)
	if err != nil || !strings.Contains(out, "no changes") {
		t.Errorf("second run: %q, %v", out, err)
	}

	out, _, err = runConfigure(t, "--hosts-dir", hosts, "--restore")
	if err != nil || !strings.Contains(out, "wrote "+orig) {
		t.Errorf("restore: %q, %v", out, err)
	}
	if b, _ := os.ReadFile(orig); string(b) != "server = \"https://registry-1.docker.io\"\n" {
		t.Errorf("restored file = %q", b)
	}
}

func TestConfigureCmd_Refused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(bad, []byte("mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("mirrors:\n  docker.io:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"invalid regex", []string{"--registries", bad, "--hosts-dir", dir}, bad + `: mirrors."docker.io".rewrite."(": invalid regular expression`},
		{"missing file", []string{"--registries", filepath.Join(dir, "nope.yaml"), "--hosts-dir", dir}, "no such file"},
		{"extra args", []string{"--hosts-dir", dir, "x"}, "unexpected arguments"},
		{"key without cert", []string{"--registries", good, "--hosts-dir", dir, "--mirror-key", "k"}, "--mirror-key needs --mirror-cert"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		_, _, err := runConfigure(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, _, err := runConfigure(t, "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("a refused run wrote files: %v", entries)
	}
}
