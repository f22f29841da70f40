package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPolicyCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := policyCmd(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestPolicyCmd_Eval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.json")
	if err := os.WriteFile(input, []byte(`{"reference": {"registry": "ghcr.io", "repository": "org/app", "tag": "latest"}, "mirrors": ["docker.io"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		wantAllow   bool
		wantReasons []string
	}{
		{"shipped policies by default", []string{"--action", "resolve", "--input", input}, false,
			[]string{"latest tag is not shared between nodes: ghcr.io/org/app:latest (set data.sluice.settings.enable_latest to share it)", `registry "ghcr.io" is not in mirrors`}},
		{"serve ignores latest", []string{"--policy", "../../policies", "--action", "serve", "--input", input}, false,
			[]string{`registry "ghcr.io" is not in mirrors`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runPolicyCmd(t, append([]string{"eval"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Allow   *bool    `json:"allow"`
				Reasons []string `json:"reasons"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got.Allow == nil || *got.Allow != tc.wantAllow || strings.Join(got.Reasons, "|") != strings.Join(tc.wantReasons, "|") {
				t.Errorf("got %s", out)
			}
		})
	}
	// An allow prints an empty reasons array, not null.
	allowIn := filepath.Join(dir, "allow.yaml")
	if err := os.WriteFile(allowIn, []byte("reference: {registry: docker.io, repository: library/nginx, tag: '1.27'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runPolicyCmd(t, "eval", "--action", "advertise", "--input", allowIn)
	if err != nil || strings.TrimSpace(out) != `{"allow":true,"reasons":[]}` {
		t.Errorf("allow: %q, %v", out, err)
	}
	out, _, err = runPolicyCmd(t, "eval", "--action", "advertise", "--mirrors", "quay.io", "--input", allowIn)
	if err != nil || !strings.Contains(out, `"allow":false`) {
		t.Errorf("--mirrors: %q, %v", out, err)
	}
}

func TestPolicyCmd_EvalErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rego")
	if err := os.WriteFile(bad, []byte("package sluice.serve\n\nallow if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, []byte(`{"mirrors": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{}, true, "subcommand"},
		{[]string{"nope"}, true, "nope"},
		{[]string{"eval", "--action", "pull", "--input", in}, true, "pull"},
		{[]string{"eval", "--action", "serve"}, true, "--input"},
		{[]string{"eval", "--action", "serve", "--input", in, "--policy", bad}, false, "bad.rego:"},
		{[]string{"eval", "--action", "serve", "--input", filepath.Join(dir, "missing.json")}, false, "missing.json"},
		{[]string{"test"}, true, "case files"},
	} {
		_, _, err := runPolicyCmd(t, tc.args...)
		if err == nil || errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want usage=%v containing %q", tc.args, err, tc.usage, tc.want)
		}
	}
}

func TestPolicyCmd_Test(t *testing.T) {
	t.Parallel()
	out, _, err := runPolicyCmd(t, "test", "--policy", "../../policies", "../../policies/testdata/*.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.HasSuffix(out, " passed, 0 failed\n") || strings.Contains(out, "FAIL") {
		t.Errorf("output:\n%s", out)
	}
	// A wrong expectation fails, names the case, and counts it.
	cases := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(cases, []byte(`cases:
  - name: wrong on purpose
    action: resolve
    input: {reference: {registry: ghcr.io, digest: "sha256:aa"}, mirrors: [docker.io]}
    want_allow: true
  - name: right
    action: resolve
    input: {reference: {registry: ghcr.io, digest: "sha256:aa"}, mirrors: [docker.io]}
    want_allow: false
    want_reasons: ["not in mirrors"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runPolicyCmd(t, "test", cases)
	if err == nil || !strings.Contains(out, "FAIL "+cases+": wrong on purpose: allow = false, want true") || !strings.HasSuffix(out, "1 passed, 1 failed\n") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

func TestPolicyCmd_TestSaysCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := filepath.Join(dir, "cases.yaml")
	if err := os.WriteFile(cases, []byte(`cases:
  - name: weekend
    action: resolve
    input: {reference: {registry: docker.io, digest: "sha256:aa"}}
    want_allow: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	weekend := filepath.Join(dir, "weekend.rego")
	if err := os.WriteFile(weekend, []byte("package sluice.resolve\n\nallow if time.weekday(time.now_ns()) != \"never\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy, want string
	}{
		{weekend, "decision cache: off: the policy calls non-deterministic builtins (time.now_ns); every decision is evaluated\n"},
		{"../../policies", "decision cache: on (4096 entries, key: action reference.registry reference.repository reference.tag reference.digest source.registries upstream.endpoint upstream.credentials mirrors)\n"},
	} {
		out, _, err := runPolicyCmd(t, "test", "--policy", tc.policy, cases)
		if tc.policy == weekend && err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("--policy %s: output lacks %q:\n%s", tc.policy, tc.want, out)
		}
	}
}

func TestPolicyCmd_Fmt(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "p.rego")
	if err := os.WriteFile(p, []byte("package sluice.serve\nallow if   {  input.x == 1 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runPolicyCmd(t, "fmt", "-w", p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "package sluice.serve\n\nallow if input.x == 1\n"; string(got) != want {
		t.Errorf("formatted:\n%s", got)
	}
}
