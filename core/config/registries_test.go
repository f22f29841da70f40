package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseRegistries_Refused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"mirrors not a mapping", "mirrors: [docker.io]", "mirrors", "expected a mapping"},
		{"endpoint not a list", "mirrors:\n  docker.io:\n    endpoint: https://m.example.com", `mirrors."docker.io".endpoint`, "expected a list"},
		{"endpoint item a number", "mirrors:\n  docker.io:\n    endpoint: [https://a.example.com, 5]", `mirrors."docker.io".endpoint[1]`, "expected a string, got number 5"},
		{"endpoint bad scheme", "mirrors:\n  docker.io:\n    endpoint: [ftp://a.example.com]", `mirrors."docker.io".endpoint[0]`, "scheme must be http or https"},
		{"invalid rewrite regex", "mirrors:\n  docker.io:\n    rewrite:\n      \"^rancher/(.*\": \"x/$1\"", `mirrors."docker.io".rewrite."^rancher/(.*"`, "invalid regular expression"},
		{"rewrite not a mapping", "mirrors:\n  docker.io:\n    rewrite: [a]", `mirrors."docker.io".rewrite`, "expected a mapping"},
		{"registry key with scheme", "mirrors:\n  https://docker.io:", `mirrors."https://docker.io"`, "not a registry host"},
		{"registry key bad port", "mirrors:\n  reg.local:99999:", `mirrors."reg.local:99999"`, "invalid port"},
		{"skip verify not bool", "configs:\n  reg.local:\n    tls:\n      insecure_skip_verify: \"yes\"", `configs."reg.local".tls.insecure_skip_verify`, "expected a boolean"},
		{"ca_file not string", "configs:\n  reg.local:\n    tls:\n      ca_file: [a]", `configs."reg.local".tls.ca_file`, "expected a string"},
		{"key without cert", "configs:\n  reg.local:\n    tls:\n      key_file: /k", `configs."reg.local".tls.key_file`, "needs cert_file"},
		{"auth not mapping", "configs:\n  reg.local:\n    auth: robot", `configs."reg.local".auth`, "expected a mapping"},
		{"top level list", "- a", "", "expected a mapping"},
		{"unquoted wildcard", "mirrors:\n  *:", "", "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ParseRegistries("/etc/rancher/k3s/registries.yaml", []byte(tt.yaml))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FieldError", err)
			}
			if fe.File != "/etc/rancher/k3s/registries.yaml" || fe.Key != tt.key {
				t.Errorf("file, key = %q, %q; want the file and %q", fe.File, fe.Key, tt.key)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "/etc/rancher/k3s/registries.yaml: "+tt.key) {
				t.Errorf("message %q lacks file, key %q or %q", err, tt.key, tt.msg)
			}
		})
	}
}

func TestParseRegistries_Warnings(t *testing.T) {
	t.Parallel()
	in := `
mirrors:
  docker.io:
    endpoints: [https://typo.example.com]
configs:
  reg.local:
    tls:
      ca: /x
    tlsx: {}
extra: 1
`
	reg, warnings, err := ParseRegistries("r.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, w.String())
	}
	want := []string{
		"r.yaml: extra: unknown key, ignored",
		`r.yaml: mirrors."docker.io".endpoints: unknown key, ignored`,
		`r.yaml: configs."reg.local".tlsx: unknown key, ignored`,
		`r.yaml: configs."reg.local".tls.ca: unknown key, ignored`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m := reg.Mirrors(); !slices.Equal(m, []string{"docker.io"}) {
		t.Errorf("Mirrors() = %v", m)
	}
}

func TestRegistries_Mirrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml     string
		want     []string
		wildcard bool
	}{
		{"", []string{}, false},
		{"mirrors:", []string{}, false},
		{"configs:\n  docker.io:\n    tls:\n      insecure_skip_verify: true", []string{}, false},
		{"mirrors:\n  registry.k8s.io:\n  docker.io:", []string{"docker.io", "registry.k8s.io"}, false},
		{"mirrors:\n  \"*\":\n  quay.io:", []string{"*", "quay.io"}, true},
	}
	for _, tt := range tests {
		reg, _, err := ParseRegistries("r.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		got := reg.Mirrors()
		if got == nil || !slices.Equal(got, tt.want) || reg.HasWildcard() != tt.wildcard {
			t.Errorf("%q: Mirrors() = %#v, HasWildcard = %t; want %#v, %t", tt.yaml, got, reg.HasWildcard(), tt.want, tt.wildcard)
		}
	}
}

func TestMirror_Rewrite(t *testing.T) {
	t.Parallel()
	reg, _, err := ParseRegistries("r.yaml", []byte("mirrors:\n  docker.io:\n    rewrite:\n      \"^rancher/(.*)\": \"mirrorproject/rancher-images/$1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := reg.Mirrored["docker.io"]
	if got, ok := m.Rewrite("rancher/klipper-lb"); !ok || got != "mirrorproject/rancher-images/klipper-lb" {
		t.Errorf("Rewrite = %q, %t", got, ok)
	}
	if got, ok := m.Rewrite("library/nginx"); ok || got != "library/nginx" {
		t.Errorf("Rewrite(no match) = %q, %t", got, ok)
	}
}

func TestLoadRegistries_CertFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "registries.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Relative paths resolve against the file's directory.
	write("mirrors:\n  reg.local:\nconfigs:\n  reg.local:\n    tls:\n      ca_file: ca.crt\n")
	reg, _, err := LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Configs["reg.local"].TLS.CAFile; got != filepath.Join(dir, "ca.crt") {
		t.Errorf("ca_file = %q", got)
	}
	// A missing file is refused with the file and key.
	write("configs:\n  reg.local:\n    tls:\n      ca_file: ca.crt\n      cert_file: /nonexistent/client.crt\n")
	_, _, err = LoadRegistries(path)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != path || fe.Key != `configs."reg.local".tls.cert_file` || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v; want a FieldError naming %s and the cert_file key", err, path)
	}
	if _, _, err := LoadRegistries(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}
