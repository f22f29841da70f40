package wasm_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// TestEngine_HostileGuests checks that a guest that loops, exhausts memory
// or returns garbage fails its decision with a coded error, is counted,
// and does not disturb decisions running beside it.
func TestEngine_HostileGuests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		guest   string
		repo    string
		want    wasm.Code
		timeout time.Duration
	}{
		// The deadline holds for the healthy decisions beside it too: 100 ms
		// was missed by a fresh instance growing its heap on a loaded machine.
		{"loop", "loop", wasm.CodeTimeout, time.Second},
		// Growing memory copies it on every memory.grow: allow the time.
		{"grow", "grow", wasm.CodeMemoryLimit, 10 * time.Second},
		{"garbage", "garbage", wasm.CodeBadResult, 5 * time.Second},
		{"garbage", "oob", wasm.CodeOutOfBounds, 5 * time.Second},
		{"garbage", "huge", wasm.CodeBadResult, 5 * time.Second},
		{"garbage", "logoob", wasm.CodeOutOfBounds, 5 * time.Second},
		// A Go guest's unrecovered panic ends in runtime.abort: unreachable.
		{"garbage", "panic", wasm.CodeTrap, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.guest+"/"+tt.repo, func(t *testing.T) {
			t.Parallel()
			e, reg := newEngine(t, tt.guest, nil,
				wasm.WithPoolSize(3), wasm.WithTimeout(tt.timeout), wasm.WithMemoryLimitPages(128))
			hostile := policy.Input{Reference: ref("docker.io", tt.repo, "v", ""), Mirrors: []string{"*"}}
			healthy := policy.Input{Reference: ref("docker.io", "ok", "v", ""), Mirrors: []string{"*"}}

			// Healthy decisions run beside the hostile ones and all succeed:
			// at least 20, and then until the hostile calls are over.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var wg sync.WaitGroup
			var healthyErr error
			var healthyN int
			wg.Go(func() {
				for (healthyN < 20 || ctx.Err() == nil) && healthyN < 5000 {
					d, err := e.Decide(context.WithoutCancel(ctx), policy.ActionResolve, healthy)
					if err != nil || !d.Allow {
						healthyErr = errors.Join(healthyErr, err, errors.New("healthy decision denied"))
						return
					}
					healthyN++
				}
			})

			const rounds = 2
			for range rounds {
				start := time.Now()
				d, err := e.Decide(t.Context(), policy.ActionResolve, hostile)
				var werr *wasm.Error
				if !errors.As(err, &werr) || werr.Code != tt.want {
					t.Fatalf("Decide = %+v, %v; want *wasm.Error with code %s", d, err, tt.want)
				}
				if d.Allow {
					t.Errorf("failed decision allows")
				}
				if werr.Module != tt.guest {
					t.Errorf("error module = %q, want %q", werr.Module, tt.guest)
				}
				if elapsed := time.Since(start); elapsed > 15*time.Second {
					t.Errorf("hostile decision took %v", elapsed)
				}
			}
			cancel()
			wg.Wait()
			if healthyErr != nil {
				t.Errorf("healthy decisions failed beside the hostile guest: %v", healthyErr)
			}
			if got := errorCount(t, reg, tt.guest, tt.want); got != rounds {
				t.Errorf("sluice_wasm_errors_total{code=%q} = %v, want %d", tt.want, got, rounds)
			}
			// The broken instances were replaced: the engine still works.
			if d, err := e.Decide(t.Context(), policy.ActionResolve, healthy); err != nil || !d.Allow {
				t.Errorf("Decide after hostile calls = %+v, %v", d, err)
			}
		})
	}
}

func TestNew_RefusesBadModules(t *testing.T) {
	t.Parallel()
	emptyModule := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	tests := []struct {
		name    string
		module  func(t *testing.T) []byte
		want    wasm.Code
		message string
	}{
		{"abi2", func(t *testing.T) []byte { return guest(t, "abi2") }, wasm.CodeABIVersion, "module speaks sluice Wasm ABI v2; this host speaks v1"},
		{"not wasm", func(*testing.T) []byte { return []byte("#!/bin/sh\necho hi\n") }, wasm.CodeCompile, "invalid magic number"},
		{"empty", func(*testing.T) []byte { return emptyModule }, wasm.CodeABI, "missing export sluice_abi_version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := newRegistry()
			e, err := wasm.New(t.Context(), tt.name, tt.module(t), nil, wasm.WithCompilationCache(testCache), wasm.WithRegisterer(reg))
			if err == nil {
				_ = e.Close()
				t.Fatal("New accepted the module")
			}
			if wasm.CodeOf(err) != tt.want || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("New = %v; want code %s and %q", err, tt.want, tt.message)
			}
			if got := errorCount(t, reg, tt.name, tt.want); got != 1 {
				t.Errorf("sluice_wasm_errors_total = %v, want 1", got)
			}
		})
	}
}

func TestEngine_CallerContext(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, "loop", nil, wasm.WithPoolSize(1), wasm.WithTimeout(10*time.Second))
	loop := policy.Input{Reference: ref("docker.io", "loop", "v", ""), Mirrors: []string{"*"}}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, err := e.Decide(ctx, policy.ActionResolve, loop); wasm.CodeOf(err) != wasm.CodeTimeout {
		t.Fatalf("Decide with a 30ms caller deadline = %v, want timeout", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := e.Decide(ctx, policy.ActionResolve, loop); wasm.CodeOf(err) != wasm.CodeCanceled {
		t.Fatalf("Decide canceled by the caller = %v, want canceled", err)
	}
}
