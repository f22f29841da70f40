package policy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
)

// fakeWasm is a Wasm source: it denies repositories named in its data.
type fakeWasm struct {
	path   string
	data   map[string]any
	closed *atomic.Int32
	err    error
}

func (f *fakeWasm) EngineName() string { return "wasm" }

func (f *fakeWasm) Decide(_ context.Context, _ policy.Action, in policy.Input) (policy.Decision, error) {
	if f.err != nil {
		return policy.Decision{}, f.err
	}
	if in.Reference != nil && in.Reference.Repository == "blocked/app" {
		return policy.Decision{Allow: false, Reasons: []string{"blocked by " + filepath.Base(f.path)}}, nil
	}
	return policy.Decision{Allow: true}, nil
}

func (f *fakeWasm) Close() error { f.closed.Add(1); return nil }

func TestLoad_WasmSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := writeFile(t, dir, "guard.wasm", "\x00asmfake")
	data := writeFile(t, dir, "settings.json", `{"sluice": {"settings": {"digest_only": true}}}`)
	var closed atomic.Int32
	var gotData map[string]any
	opener := func(_ context.Context, path string, module []byte, data map[string]any) (policy.Engine, error) {
		if string(module) != "\x00asmfake" {
			t.Errorf("module bytes %q", module)
		}
		gotData = data
		if strings.Contains(path, "broken") {
			return &fakeWasm{path: path, closed: &closed, err: errors.New("trap: unreachable")}, nil
		}
		return &fakeWasm{path: path, data: data, closed: &closed}, nil
	}
	reg := prometheus.NewRegistry()
	s, err := policy.Load(t.Context(), []string{"../policies", w, data}, policy.WithWasm(opener), policy.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	if gotData["sluice"] == nil {
		t.Errorf("opener data: %v", gotData)
	}
	blocked := &policy.Reference{Registry: "docker.io", Repository: "blocked/app", Tag: "1.0"}
	d := decide(t, s, policy.ActionServe, policy.Input{Reference: blocked})
	// both sources deny: rego (digest_only) and wasm; reasons concatenated
	if d.Allow || len(d.Reasons) != 2 || !strings.HasPrefix(d.Reasons[0], "digest_only:") || d.Reasons[1] != "blocked by guard.wasm" {
		t.Errorf("combined: %+v", d)
	}
	blocked.Tag, blocked.Digest = "", "sha256:"+strings.Repeat("c", 64)
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: blocked}); d.Allow || len(d.Reasons) != 1 {
		t.Errorf("wasm alone denies: %+v", d)
	}
	if got := counterValue(t, reg, "sluice_policy_decisions_total", map[string]string{"action": "serve", "engine": "wasm", "result": "deny"}); got != 2 {
		t.Errorf("wasm denies = %v", got)
	}
	if err := s.Close(); err != nil || closed.Load() != 1 {
		t.Errorf("close: %v, closed %d", err, closed.Load())
	}

	// A trapping module is an engine error: deny (fail closed), counted.
	broken := writeFile(t, dir, "broken.wasm", "\x00asmfake")
	s2, err := policy.Load(t.Context(), []string{broken}, policy.WithWasm(opener), policy.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	d = decide(t, s2, policy.ActionServe, policy.Input{Reference: digestRef("docker.io")})
	if d.Allow || !strings.Contains(d.Reasons[0], policy.CodeEval) || !strings.Contains(d.Reasons[0], "trap") {
		t.Errorf("trap: %+v", d)
	}
	if got := counterValue(t, reg, "sluice_policy_errors_total", map[string]string{"engine": "wasm"}); got != 1 {
		t.Errorf("wasm errors = %v", got)
	}
}

func TestSet_Timeout(t *testing.T) {
	t.Parallel()
	// A policy that takes long: walks a big numbers range per decision.
	p := writeFile(t, t.TempDir(), "slow.rego", `package sluice.resolve

allow if count([x | some x in numbers.range(1, 50000000); x % 7 == 0]) > 0
`)
	s, err := policy.Load(t.Context(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := s.Decide(ctx, policy.ActionResolve, policy.Input{})
	if err != nil || d.Allow || !strings.Contains(strings.Join(d.Reasons, ","), policy.CodeTimeout) {
		t.Errorf("got %+v, %v", d, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
}

func testKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testKeyPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&testKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

const bundleRego = `package sluice.advertise

deny contains "bundle says no" if input.reference.repository == "org/secret"
`

func testBundle() bundle.Bundle {
	return bundle.Bundle{
		Manifest: bundle.Manifest{Roots: &[]string{""}},
		Modules:  []bundle.ModuleFile{{URL: "/extra/deny.rego", Path: "/extra/deny.rego", Raw: []byte(bundleRego)}},
		Data:     map[string]any{},
	}
}

func writeBundle(t *testing.T, b bundle.Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unsignedBundle(t *testing.T) []byte { return writeBundle(t, testBundle()) }

func TestLoad_SignedBundle(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	b := testBundle()
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(privPEM), "RS256", ""), "k1", false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	signed := filepath.Join(dir, "signed.tar.gz")
	if err := os.WriteFile(signed, writeBundle(t, b), 0o644); err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "key.pem", string(pubPEM))
	s, err := policy.Load(t.Context(), []string{signed}, policy.WithVerificationKeyFile(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	in := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/secret", Digest: "sha256:" + strings.Repeat("d", 64)}}
	if d := decide(t, s, policy.ActionAdvertise, in); d.Allow || d.Reasons[0] != "bundle says no" {
		t.Errorf("bundle rule: %+v", d)
	}
	// Another key does not verify it.
	if _, err := policy.Load(t.Context(), []string{signed}, policy.WithVerificationKey(testKeyPEM(t))); policy.ErrorCode(err) != policy.CodeLoad {
		t.Errorf("wrong key: %v", err)
	}
	// A tampered bundle does not verify.
	tampered := b
	tampered.Modules = []bundle.ModuleFile{{URL: "/extra/deny.rego", Path: "/extra/deny.rego", Raw: []byte(strings.ReplaceAll(bundleRego, "org/secret", "org/other"))}}
	tp := filepath.Join(dir, "tampered.tar.gz")
	if err := os.WriteFile(tp, writeBundle(t, tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(t.Context(), []string{tp}, policy.WithVerificationKey(pubPEM)); policy.ErrorCode(err) != policy.CodeLoad {
		t.Errorf("tampered: %v", err)
	}
	// Without a key, bundles load unverified.
	if _, err := policy.Load(t.Context(), []string{tp}); err != nil {
		t.Errorf("no key: %v", err)
	}
}

var _ io.Closer = (*fakeWasm)(nil)
