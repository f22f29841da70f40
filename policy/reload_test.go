package policy_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
)

const allowGhcr = "package sluice.resolve\n\nallow if input.reference.registry == \"ghcr.io\"\n"

func TestSet_ReloadKeepsLastGood(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := writeFile(t, dir, "p.rego", allowGhcr)
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	s, err := policy.Load(t.Context(), []string{dir}, policy.WithRegisterer(reg), policy.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	rev0 := s.Revision()
	in := policy.Input{Reference: digestRef("ghcr.io")}
	if d := decide(t, s, policy.ActionResolve, in); !d.Allow {
		t.Fatalf("before: %+v", d)
	}
	// Unchanged files: same revision.
	if err := s.Reload(t.Context()); err != nil || s.Revision() != rev0 {
		t.Fatalf("unchanged reload: %v, %s", err, s.Revision())
	}
	// A broken file is rejected with file:line; the old policy keeps serving.
	if err := os.WriteFile(p, []byte("package sluice.resolve\n\nallow if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = s.Reload(t.Context())
	if policy.ErrorCode(err) != policy.CodeCompile || !strings.Contains(err.Error(), "p.rego:") {
		t.Fatalf("broken reload: %v", err)
	}
	if s.LastError() == nil || s.Revision() != rev0 {
		t.Errorf("LastError %v, revision %s", s.LastError(), s.Revision())
	}
	if d := decide(t, s, policy.ActionResolve, in); !d.Allow {
		t.Errorf("last good policy lost: %+v", d)
	}
	if !strings.Contains(logs.String(), "policy reload failed") || !strings.Contains(logs.String(), "p.rego:") {
		t.Errorf("log: %s", logs.String())
	}
	// A fixed file is picked up; the cache of the old revision is dropped.
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(allowGhcr, "ghcr.io", "quay.io")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(t.Context()); err != nil || s.LastError() != nil || s.Revision() == rev0 {
		t.Fatalf("fixed reload: %v, %v", err, s.LastError())
	}
	if d := decide(t, s, policy.ActionResolve, in); d.Allow {
		t.Errorf("stale decision after reload: %+v", d)
	}
	for result, want := range map[string]float64{"error": 1, "success": 1, "unchanged": 1} {
		if got := counterValue(t, reg, "sluice_policy_reloads_total", map[string]string{"result": result}); got != want {
			t.Errorf("reloads{%s} = %v, want %v", result, got, want)
		}
	}
}

func TestSet_WatchSwapsWithoutFailingRequests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := writeFile(t, dir, "p.rego", allowGhcr)
	s, err := policy.Load(t.Context(), []string{dir}, policy.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Watch(ctx); err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	// Deciders run during the swaps; none may see an error.
	var failures, decisions atomic.Int64
	for range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 200000; i++ {
				d, err := s.Decide(t.Context(), policy.ActionResolve, policy.Input{Reference: digestRef("ghcr.io")})
				decisions.Add(1)
				if err != nil || (!d.Allow && !strings.Contains(strings.Join(d.Reasons, ""), "no allow rule")) {
					failures.Add(1)
				}
				if i%64 == 63 {
					// Leave the watcher some CPU on a loaded 2-core
					// machine (the reload compiles under -race).
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	rev0 := s.Revision()
	time.Sleep(50 * time.Millisecond) // let the watcher start
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(allowGhcr, "ghcr.io", "quay.io")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Revision() != rev0 })
	// A broken file keeps the new good revision; a new file in a new
	// subdirectory is then picked up.
	rev1 := s.Revision()
	writeFile(t, dir, "broken.rego", "package x\n\nnot valid rego (\n")
	waitFor(t, func() bool { return s.LastError() != nil })
	if s.Revision() != rev1 {
		t.Errorf("broken file changed the revision")
	}
	if err := os.Remove(filepath.Join(dir, "broken.rego")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "sub/extra.rego", allowGhcr)
	waitFor(t, func() bool { return s.LastError() == nil && s.Revision() != rev1 })
	if d := decide(t, s, policy.ActionResolve, policy.Input{Reference: digestRef("ghcr.io")}); !d.Allow {
		t.Errorf("after watch reloads: %+v", d)
	}
	cancel()
	wg.Wait()
	if failures.Load() != 0 || decisions.Load() == 0 {
		t.Errorf("%d of %d decisions failed during reloads", failures.Load(), decisions.Load())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
