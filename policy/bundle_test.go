package policy_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/sluice-oci/sluice/policy"
)

// TestLoad_BundleWithCompiledPolicyRefused: an OPA bundle that carries a
// compiled policy.wasm (or plan.json) is refused with an error naming the
// file, at load and at reload, where the last good set keeps deciding.
func TestLoad_BundleWithCompiledPolicyRefused(t *testing.T) {
	t.Parallel()
	withWasm := testBundle()
	withWasm.WasmModules = []bundle.WasmModuleFile{{URL: "/authz/policy.wasm", Path: "/authz/policy.wasm", Raw: []byte("\x00asm\x01\x00\x00\x00")}}
	withPlan := testBundle()
	withPlan.PlanModules = []bundle.PlanModuleFile{{URL: "/plan.json", Path: "/plan.json", Raw: []byte(`{"static": {}, "plans": {"plans": []}, "funcs": {"funcs": []}}`)}}
	cases := []struct {
		name string
		b    bundle.Bundle
		want string
	}{
		{"policy.wasm", withWasm, "b.tar.gz:authz/policy.wasm: OPA bundles with compiled Wasm policy (policy.wasm) are not supported"},
		{"plan.json", withPlan, "b.tar.gz:plan.json: OPA bundles with compiled plans (plan.json) are not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, "b.tar.gz")
			if err := os.WriteFile(p, writeBundle(t, tc.b), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := policy.Load(t.Context(), []string{p})
			if policy.ErrorCode(err) != policy.CodeLoad || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want %s containing %q", err, policy.CodeLoad, tc.want)
			}

			// Reload: a good bundle is replaced by one with a compiled policy.
			if err := os.WriteFile(p, unsignedBundle(t), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := policy.Load(t.Context(), []string{p})
			if err != nil {
				t.Fatal(err)
			}
			secret := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/secret", Digest: "sha256:" + strings.Repeat("d", 64)}}
			if d := decide(t, s, policy.ActionAdvertise, secret); d.Allow {
				t.Fatalf("good bundle: %+v", d)
			}
			rev := s.Revision()
			if err := os.WriteFile(p, writeBundle(t, tc.b), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Reload: %v, want %q", err, tc.want)
			}
			if s.Revision() != rev {
				t.Errorf("revision changed to %s", s.Revision())
			}
			if d := decide(t, s, policy.ActionAdvertise, secret); d.Allow || d.Reasons[0] != "bundle says no" {
				t.Errorf("last good bundle no longer decides: %+v", d)
			}
		})
	}
}

func signedBundle(t *testing.T) (bundleBytes, pubPEM []byte) {
	t.Helper()
	key := testKey(t)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b := testBundle()
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(privPEM), "RS256", ""), "k1", false); err != nil {
		t.Fatal(err)
	}
	return writeBundle(t, b), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestLoad_VerificationKeyRefusesLooseFiles: with a verification key,
// policy must come in signed bundles: a .rego, data or .wasm file, given
// as a path or found in a directory beside a bundle, is refused by name.
// The shipped policies (built into the binary) still load when no path is
// given.
func TestLoad_VerificationKeyRefusesLooseFiles(t *testing.T) {
	t.Parallel()
	signed, pub := signedBundle(t)
	open := func(_ context.Context, path string, _ []byte, _ map[string]any) (policy.Engine, error) {
		return &fakeWasm{path: path, closed: new(atomic.Int32)}, nil
	}
	cases := []struct {
		name  string
		files map[string]string // written into a temp dir; "b.tar.gz" gets the signed bundle
		paths []string          // relative to the dir; nil: the dir itself
		want  string            // "" loads
	}{
		{"signed bundle alone", map[string]string{"b.tar.gz": ""}, []string{"b.tar.gz"}, ""},
		{"directory holding only the bundle", map[string]string{"b.tar.gz": "", ".hidden.rego": "x", "README.md": "x"}, nil, ""},
		{"loose .rego path", map[string]string{"b.tar.gz": "", "allow.rego": allowGhcr}, []string{"b.tar.gz", "allow.rego"}, "allow.rego"},
		{"loose data path", map[string]string{"b.tar.gz": "", "settings.json": `{"sluice": {"settings": {"enable_latest": true}}}`}, []string{"b.tar.gz", "settings.json"}, "settings.json"},
		{"loose yaml path", map[string]string{"b.tar.gz": "", "settings.yaml": "sluice: {}"}, []string{"b.tar.gz", "settings.yaml"}, "settings.yaml"},
		{"loose .wasm path", map[string]string{"b.tar.gz": "", "guard.wasm": "\x00asm"}, []string{"b.tar.gz", "guard.wasm"}, "guard.wasm"},
		{".rego beside the bundle in a directory", map[string]string{"b.tar.gz": "", "sub/widen.rego": allowGhcr}, nil, filepath.Join("sub", "widen.rego")},
		{"shipped policy directory", nil, []string{"../policies"}, filepath.Join("..", "policies", "advertise.rego")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tc.files {
				if name == "b.tar.gz" {
					content = string(signed)
				}
				writeFile(t, dir, name, content)
			}
			paths := []string{dir}
			if tc.paths != nil {
				paths = nil
				for _, p := range tc.paths {
					if !strings.HasPrefix(p, "..") {
						p = filepath.Join(dir, p)
					}
					paths = append(paths, p)
				}
			}
			s, err := policy.Load(t.Context(), paths, policy.WithVerificationKey(pub), policy.WithWasm(open))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if policy.ErrorCode(err) != policy.CodeLoad || !strings.Contains(err.Error(), tc.want+": unsigned policy file refused") {
				t.Errorf("Load: %v (set %v), want %s naming %s", err, s != nil, policy.CodeLoad, tc.want)
			}
		})
	}
	// No path: the shipped policies, part of the binary, load with a key.
	if _, err := policy.Load(t.Context(), nil, policy.WithVerificationKey(pub)); err != nil {
		t.Errorf("shipped policies with a key: %v", err)
	}
}
