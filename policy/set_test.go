package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
)

func digestRef(registry string) *policy.Reference {
	return &policy.Reference{Registry: registry, Repository: "org/app", Digest: "sha256:" + strings.Repeat("a", 64), Kind: policy.KindManifest}
}

func tagRef(registry, tag string) *policy.Reference {
	return &policy.Reference{Registry: registry, Repository: "org/app", Tag: tag, Kind: policy.KindManifest}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func decide(t *testing.T, e policy.Engine, a policy.Action, in policy.Input) policy.Decision {
	t.Helper()
	d, err := e.Decide(t.Context(), a, in)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return d
}

func TestLoad_DefaultIsMirrorsAndLatest(t *testing.T) {
	t.Parallel()
	s, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// default mirrors ["*"]: any registry, but not :latest
	if d := decide(t, s, policy.ActionResolve, policy.Input{Reference: tagRef("ghcr.io", "1.0")}); !d.Allow {
		t.Errorf("tag on wildcard: %+v", d)
	}
	if d := decide(t, s, policy.ActionResolve, policy.Input{Reference: tagRef("ghcr.io", "latest")}); d.Allow {
		t.Errorf("latest allowed: %+v", d)
	}
	s.SetMirrors([]string{"docker.io"})
	d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("ghcr.io")})
	if d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != `registry "ghcr.io" is not in mirrors` {
		t.Errorf("unlisted after SetMirrors: %+v", d)
	}
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("index.docker.io")}); !d.Allow {
		t.Errorf("docker alias: %+v", d)
	}
	s.SetMirrors(nil) // registries.yaml with no mirrors: nothing shared
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("docker.io")}); d.Allow {
		t.Errorf("empty mirrors allowed: %+v", d)
	}
	// An explicit list in the input wins over the Set's.
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("docker.io"), Mirrors: []string{"docker.io"}}); !d.Allow {
		t.Errorf("input mirrors: %+v", d)
	}
	if s.Revision() == "" {
		t.Error("empty revision")
	}
}

func TestSet_Decide_InvalidAction(t *testing.T) {
	t.Parallel()
	s, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Decide(t.Context(), "pull", policy.Input{})
	if d.Allow || policy.ErrorCode(err) != policy.CodeInvalidAction {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestLoad_DropInTightenAndWiden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tighten := writeFile(t, dir, "tighten.rego", `package sluice.serve

deny contains "private repositories are not served" if startswith(input.reference.repository, "private/")
`)
	widen := writeFile(t, dir, "widen.rego", `package sluice.resolve

allow if input.reference.registry == "ghcr.io"
`)
	s, err := policy.Load(t.Context(), []string{"../policies", tighten, widen})
	if err != nil {
		t.Fatal(err)
	}
	s.SetMirrors([]string{"docker.io"})
	private := &policy.Reference{Registry: "docker.io", Repository: "private/app", Digest: "sha256:" + strings.Repeat("b", 64)}
	d := decide(t, s, policy.ActionServe, policy.Input{Reference: private})
	if d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != "private repositories are not served" {
		t.Errorf("tighten: %+v", d)
	}
	// ghcr.io is not in mirrors, but the drop-in widens resolve to it...
	if d := decide(t, s, policy.ActionResolve, policy.Input{Reference: digestRef("ghcr.io")}); !d.Allow || len(d.Reasons) != 0 {
		t.Errorf("widen: %+v", d)
	}
	// ...and only resolve.
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("ghcr.io")}); d.Allow {
		t.Errorf("widen leaked to serve: %+v", d)
	}
	// A deny wins over a widening allow.
	s2, err := policy.Load(t.Context(), []string{"../policies", widen, writeFile(t, dir, "d/deny.rego", `package sluice.resolve

deny contains "no" if input.reference.repository == "org/app"
`)})
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s2, policy.ActionResolve, policy.Input{Reference: digestRef("ghcr.io")}); d.Allow {
		t.Errorf("deny lost to allow: %+v", d)
	}
}

func TestLoad_DataFileTurnsSwitchOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := writeFile(t, dir, "settings.yaml", "sluice:\n  settings:\n    digest_only: true\n")
	s, err := policy.Load(t.Context(), []string{"../policies", data})
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: tagRef("docker.io", "1.0")}); d.Allow {
		t.Errorf("digest_only from data file: %+v", d)
	}
	// In a directory, a data file lands under its directory path, as OPA loads it.
	nested := t.TempDir()
	writeFile(t, nested, "sluice/settings/s.json", `{"enable_latest": true}`)
	s2, err := policy.Load(t.Context(), []string{"../policies", nested})
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s2, policy.ActionResolve, policy.Input{Reference: tagRef("docker.io", "latest")}); !d.Allow {
		t.Errorf("enable_latest from nested data: %+v", d)
	}
}

func TestLoad_Errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name     string
		files    map[string]string
		opts     []policy.Option
		code     string
		location string
	}{
		{"parse error names file and line", map[string]string{"bad.rego": "package sluice.serve\n\nallow if {\n"}, nil, policy.CodeCompile, "bad.rego:"},
		{"compile error names file and line", map[string]string{"bad.rego": "package sluice.serve\n\n\nallow if undefined_fn(1)\n"}, nil, policy.CodeCompile, "bad.rego:4"},
		{"wasm without opener", map[string]string{"p.wasm": "\x00asm"}, nil, policy.CodeLoad, "p.wasm"},
		{"data conflict", map[string]string{"a.json": `{"x": 1}`, "b.json": `{"x": 2}`}, nil, policy.CodeLoad, "b.json"},
		{"bad data", map[string]string{"a.yaml": "x: [1"}, nil, policy.CodeLoad, "a.yaml"},
		{"unsigned bundle with a key", map[string]string{"b.tar.gz": ""}, []policy.Option{policy.WithVerificationKey(testKeyPEM(t))}, policy.CodeLoad, "b.tar.gz"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, string(rune('a'+i)))
			var paths []string
			for name, content := range tc.files {
				if name == "b.tar.gz" {
					content = string(unsignedBundle(t))
				}
				paths = append(paths, writeFile(t, sub, name, content))
			}
			_, err := policy.Load(t.Context(), []string{sub}, tc.opts...)
			var pe *policy.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			if !strings.Contains(pe.Location, tc.location) || !strings.Contains(err.Error(), tc.location) {
				t.Errorf("location %q (err %v), want %q", pe.Location, err, tc.location)
			}
		})
	}
	if _, err := policy.Load(t.Context(), []string{filepath.Join(dir, "missing")}); policy.ErrorCode(err) != policy.CodeLoad {
		t.Errorf("missing path: %v", err)
	}
}

func TestLoad_UndefinedPackageFailsClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := writeFile(t, dir, "only_serve.rego", "package sluice.serve\n\nallow if true\n")
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	s, err := policy.Load(t.Context(), []string{p}, policy.WithRegisterer(reg), policy.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, policy.ActionServe, policy.Input{}); !d.Allow {
		t.Errorf("serve: %+v", d)
	}
	d := decide(t, s, policy.ActionResolve, policy.Input{})
	if d.Allow || !strings.Contains(strings.Join(d.Reasons, ","), policy.CodeUndefined) {
		t.Errorf("resolve on undefined package: %+v", d)
	}
	if n := counterValue(t, reg, "sluice_policy_errors_total", map[string]string{"engine": "rego"}); n != 1 {
		t.Errorf("errors_total = %v", n)
	}
	if !strings.Contains(buf.String(), "policy engine error") {
		t.Errorf("no error log: %s", buf.String())
	}
	open, err := policy.Load(t.Context(), []string{p}, policy.WithFailOpen(true))
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, open, policy.ActionResolve, policy.Input{}); !d.Allow {
		t.Errorf("fail-open: %+v", d)
	}
}

func TestLoad_AllowWithoutDefault(t *testing.T) {
	t.Parallel()
	p := writeFile(t, t.TempDir(), "p.rego", "package sluice.serve\n\nallow if input.peer.id == \"a\"\n")
	s, err := policy.Load(t.Context(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	d := decide(t, s, policy.ActionServe, policy.Input{Peer: &policy.Peer{ID: "b"}})
	if d.Allow || len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "no allow rule") {
		t.Errorf("got %+v", d)
	}
	if d := decide(t, s, policy.ActionServe, policy.Input{Peer: &policy.Peer{ID: "a"}}); !d.Allow {
		t.Errorf("got %+v", d)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestSet_MetricsAndDecisionLog(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var buf bytes.Buffer
	s, err := policy.Load(t.Context(), nil, policy.WithRegisterer(reg),
		policy.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))),
		policy.WithNode(policy.Node{Name: "node-1"}))
	if err != nil {
		t.Fatal(err)
	}
	s.SetMirrors([]string{"docker.io"})
	allowLocal := policy.Input{Reference: digestRef("docker.io")}
	for range 3 { // one evaluation, two cache hits
		decide(t, s, policy.ActionResolve, allowLocal)
	}
	decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("docker.io"), Peer: &policy.Peer{ID: "peer-7"}})
	decide(t, s, policy.ActionAdvertise, policy.Input{Reference: digestRef("ghcr.io")})

	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"action": "resolve", "engine": "rego", "result": "allow"}, 3},
		{map[string]string{"action": "serve", "engine": "rego", "result": "allow"}, 1},
		{map[string]string{"action": "advertise", "engine": "rego", "result": "deny"}, 1},
	} {
		if got := counterValue(t, reg, "sluice_policy_decisions_total", c.labels); got != c.want {
			t.Errorf("decisions%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := counterValue(t, reg, "sluice_policy_cache_total", map[string]string{"result": "hit"}); got != 2 {
		t.Errorf("cache hits = %v", got)
	}
	if n := seriesCount(t, reg, "sluice_policy_eval_duration_seconds"); n != 1 {
		t.Errorf("duration series = %d", n)
	}
	// Log: the peer-crossing allow and the deny; not the local allows.
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines:\n%s", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["action"] != "serve" || rec["peer"] != "peer-7" || rec["result"] != "allow" || rec["revision"] != s.Revision() {
		t.Errorf("serve log: %v", rec)
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["result"] != "deny" || !strings.Contains(lines[1], "not in mirrors") || !strings.Contains(lines[1], "ghcr.io/org/app@sha256:") {
		t.Errorf("deny log: %s", lines[1])
	}
}
