package wasm_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

func settings(kv ...any) map[string]any {
	s := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		s[kv[i].(string)] = kv[i+1]
	}
	return map[string]any{"sluice": map[string]any{"settings": s}}
}

func ref(registry, repo, tag, digest string) *policy.Reference {
	return &policy.Reference{Registry: registry, Repository: repo, Tag: tag, Digest: digest, Kind: policy.KindManifest}
}

func TestEngine_Decide(t *testing.T) {
	t.Parallel()
	plain, _ := newEngine(t, "examples/default", nil)
	latestOn, _ := newEngine(t, "examples/default", settings("enable_latest", true))
	digestOnly, _ := newEngine(t, "examples/default", settings("digest_only", true, "enable_latest", "yes"))
	tests := []struct {
		name        string
		engine      *wasm.Engine
		action      policy.Action
		in          policy.Input
		wantAllow   bool
		wantReasons []string
	}{
		{"mirrored tag", plain, policy.ActionResolve, policy.Input{Reference: ref("docker.io", "library/nginx", "1.27", ""), Mirrors: []string{"docker.io"}}, true, nil},
		{"docker alias", plain, policy.ActionResolve, policy.Input{Reference: ref("registry-1.docker.io", "library/nginx", "1.27", ""), Mirrors: []string{"Docker.IO"}}, true, nil},
		{"wildcard", plain, policy.ActionServe, policy.Input{Reference: ref("quay.io", "a/b", "", "sha256:1"), Mirrors: []string{"*"}}, true, nil},
		{"not mirrored", plain, policy.ActionResolve, policy.Input{Reference: ref("quay.io", "a/b", "v1", ""), Mirrors: []string{"docker.io"}}, false, []string{`registry "quay.io" is not in mirrors`}},
		{"no mirrors", plain, policy.ActionServe, policy.Input{Reference: ref("docker.io", "a/b", "v1", "")}, false, []string{`registry "docker.io" is not in mirrors`}},
		{"latest", plain, policy.ActionAdvertise, policy.Input{Reference: ref("docker.io", "library/nginx", "latest", ""), Mirrors: []string{"*"}}, false,
			[]string{"latest tag is not shared between nodes: docker.io/library/nginx:latest (set data.sluice.settings.enable_latest to share it)"}},
		{"latest served", plain, policy.ActionServe, policy.Input{Reference: ref("docker.io", "library/nginx", "latest", ""), Mirrors: []string{"*"}}, true, nil},
		{"latest by digest", plain, policy.ActionResolve, policy.Input{Reference: ref("docker.io", "library/nginx", "latest", "sha256:2"), Mirrors: []string{"*"}}, true, nil},
		{"latest enabled", latestOn, policy.ActionResolve, policy.Input{Reference: ref("docker.io", "library/nginx", "", ""), Mirrors: []string{"*"}}, true, nil},
		{"digest only tag, two reasons sorted", digestOnly, policy.ActionResolve, policy.Input{Reference: ref("quay.io", "a/b", "latest", ""), Mirrors: []string{"docker.io"}}, false, []string{
			"digest_only: tag reference quay.io/a/b:latest is not shared, only digests are",
			"latest tag is not shared between nodes: quay.io/a/b:latest (set data.sluice.settings.enable_latest to share it)",
			`registry "quay.io" is not in mirrors`,
		}},
		{"digest only digest", digestOnly, policy.ActionServe, policy.Input{Reference: ref("docker.io", "a/b", "", "sha256:3"), Mirrors: []string{"docker.io"}}, true, nil},
		{"unicode and escapes reach the guest", plain, policy.ActionResolve, policy.Input{Reference: ref("é\"<x>\n", "a", "v", ""), Mirrors: []string{"é\"<x>\n"}}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := tt.engine.Decide(t.Context(), tt.action, tt.in)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Allow != tt.wantAllow || !slices.Equal(d.Reasons, tt.wantReasons) {
				t.Errorf("Decide = %+v, want allow=%v reasons=%q", d, tt.wantAllow, tt.wantReasons)
			}
		})
	}
}

func TestEngine_CloseAndOpener(t *testing.T) {
	t.Parallel()
	open := wasm.Opener(wasm.WithCompilationCache(testCache), wasm.WithPoolSize(2))
	eng, err := open(t.Context(), "/etc/sluice/policies/default.wasm", guest(t, "examples/default"), nil)
	if err != nil {
		t.Fatal(err)
	}
	named, ok := eng.(interface{ EngineName() string })
	if !ok || named.EngineName() != "wasm" {
		t.Errorf("engine does not name itself wasm")
	}
	if m := eng.(*wasm.Engine).Module(); m != "default.wasm" {
		t.Errorf("Module() = %q, want default.wasm", m)
	}
	in := policy.Input{Reference: ref("docker.io", "a", "v", ""), Mirrors: []string{"*"}}
	if d, err := eng.Decide(t.Context(), policy.ActionResolve, in); err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	closer, ok := eng.(io.Closer)
	if !ok {
		t.Fatal("engine is not an io.Closer")
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = eng.Decide(t.Context(), policy.ActionResolve, in)
	if wasm.CodeOf(err) != wasm.CodeClosed || !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("Decide after Close = %v, want code closed", err)
	}
	// A second engine of the same opener reuses the compiled code.
	eng2, err := open(t.Context(), "default.wasm", guest(t, "examples/default"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = eng2.(io.Closer).Close()
}

func TestEngine_GuestLogs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, _ := newEngine(t, "garbage", nil, wasm.WithLogger(log))
	d, err := e.Decide(t.Context(), policy.ActionResolve, policy.Input{Reference: ref("r", "chatty", "", "")})
	if err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	out := buf.String()
	for _, want := range []string{`level=WARN msg="hello from the guest" module=garbage`, `msg="printed to stdout"`, "stream=stdout"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
