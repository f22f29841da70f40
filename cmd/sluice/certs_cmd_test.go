package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/internal/certs"
)

func TestCertsCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := certsCmd(t.Context(), args, &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := run("init", "--dir", dir); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if _, err := run("init", "--dir", dir); !errors.Is(err, certs.ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	out, err := run("issue", "--dir", dir, "--name", "node-1", "--ip", "127.0.0.2,127.0.0.3", "--dns", "n1.local")
	if err != nil {
		t.Fatalf("issue: %v\n%s", err, out)
	}
	for _, want := range []string{"IP:127.0.0.2", "IP:127.0.0.3", "DNS:node-1", "DNS:n1.local", "CN=node-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("issue output lacks %q:\n%s", want, out)
		}
	}
	// The files load as --tls-cert/--tls-key/--client-ca/--peer-ca do.
	cert, key := certs.Paths(dir, "node-1")
	ca := filepath.Join(dir, certs.CAFile)
	srv, cli, err := loadTLS(&runConfig{TLSCert: cert, TLSKey: key, ClientCA: ca, PeerCA: ca})
	if err != nil || srv == nil || cli == nil {
		t.Fatalf("loadTLS: %v", err)
	}
	psk := filepath.Join(dir, "psk")
	if out, err := run("psk", "--out", psk); err != nil {
		t.Fatalf("psk: %v\n%s", err, out)
	}
	if k, err := loadPSK(psk); err != nil || len(k) != 32 {
		t.Fatalf("loadPSK of a generated key: %d bytes, %v", len(k), err)
	}
	if fi, _ := os.Stat(psk); fi.Mode().Perm() != 0o600 {
		t.Errorf("psk mode %v", fi.Mode().Perm())
	}
	if _, err := run("psk", "--out", psk); err == nil {
		t.Error("psk overwrote an existing file without --force")
	}
	for _, args := range [][]string{
		{}, {"bogus"}, {"init"}, {"issue", "--dir", dir}, {"issue", "--dir", dir, "--name", "../evil"},
		{"issue", "--dir", dir, "--name", "x", "--ip", "not-an-ip"}, {"issue", "--dir", t.TempDir(), "--name", "x"},
		{"init", "--dir", dir, "extra"},
	} {
		if _, err := run(args...); err == nil {
			t.Errorf("certs %v succeeded", args)
		}
	}
}

func TestLoadPSK_short(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "psk")
	if err := os.WriteFile(p, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadPSK(p)
	if err == nil || !strings.Contains(err.Error(), "32-byte") {
		t.Fatalf("short key: %v, want a clear refusal", err)
	}
}
