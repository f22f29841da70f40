package config

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

type loaded struct {
	mirrors []string
	err     error
}

func TestWatchRegistries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(path, []byte("mirrors:\n  docker.io:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan loaded, 16)
	done := make(chan error, 1)
	go func() {
		done <- WatchRegistries(ctx, path, 20*time.Millisecond, func(r *Registries, _ []Warning, err error) {
			got <- loaded{r.Mirrors(), err}
		})
	}()
	next := func() loaded {
		t.Helper()
		select {
		case l := <-got:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no reload within 5s")
			return loaded{}
		}
	}
	time.Sleep(100 * time.Millisecond) // let the watch start

	// In-place write.
	if err := os.WriteFile(path, []byte("mirrors:\n  docker.io:\n  \"*\":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := next(); l.err != nil || !slices.Equal(l.mirrors, []string{"*", "docker.io"}) {
		t.Errorf("after write: %+v", l)
	}
	// Atomic replace by rename, as editors and ConfigMaps do.
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, []byte("mirrors:\n  quay.io:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if l := next(); l.err != nil || !slices.Equal(l.mirrors, []string{"quay.io"}) {
		t.Errorf("after rename: %+v", l)
	}
	// Same bytes again, and an unrelated file: no reload.
	if err := os.WriteFile(path, []byte("mirrors:\n  quay.io:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A bad file is reported as an error.
	time.Sleep(100 * time.Millisecond)
	if err := os.WriteFile(path, []byte("mirrors: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := next(); l.err == nil {
		t.Errorf("bad file: %+v, want an error", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchRegistries returned %v", err)
	}
	if len(got) != 0 {
		t.Errorf("unexpected extra reloads: %d", len(got))
	}
}
