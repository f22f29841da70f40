package policy_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
)

// closingEngine denies everything, and errs once closed, as a Wasm engine
// whose runtime is gone does. Decide blocks on gate when it is set.
type closingEngine struct {
	started chan struct{} // closed when a decision starts (gate set)
	gate    chan struct{}
	closed  atomic.Bool
	once    sync.Once
}

func (e *closingEngine) Decide(ctx context.Context, _ policy.Action, _ policy.Input) (policy.Decision, error) {
	if e.gate != nil {
		e.once.Do(func() { close(e.started) })
		select {
		case <-e.gate:
		case <-ctx.Done():
			return policy.Decision{}, ctx.Err()
		}
	}
	if e.closed.Load() {
		return policy.Decision{}, errors.New("engine closed")
	}
	return policy.Decision{Allow: false, Reasons: []string{"slow deny"}}, nil
}

func (e *closingEngine) Close() error { e.closed.Store(true); return nil }

// TestSet_ReloadDuringSlowDecision: a decision that started before a
// reload and outlasts it runs to its end on the engines it started with;
// they close only then. With fail-open, a closed engine would have turned
// the deny into an allow.
func TestSet_ReloadDuringSlowDecision(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := writeFile(t, dir, "guard.wasm", "slow")
	slow := &closingEngine{started: make(chan struct{}), gate: make(chan struct{})}
	var opened []*closingEngine
	open := func(_ context.Context, _ string, module []byte, _ map[string]any) (policy.Engine, error) {
		if string(module) == "slow" {
			return slow, nil
		}
		e := &closingEngine{}
		opened = append(opened, e) // reloads are serial
		return e, nil
	}
	s, err := policy.Load(t.Context(), []string{w}, policy.WithWasm(open), policy.WithFailOpen(true), policy.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan policy.Decision, 1)
	go func() {
		d, err := s.Decide(t.Context(), policy.ActionServe, policy.Input{Reference: digestRef("docker.io")})
		if err != nil {
			t.Errorf("Decide: %v", err)
		}
		got <- d
	}()
	<-slow.started
	writeFile(t, dir, "guard.wasm", "fast")
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The old set used to close its engines 10 s after a reload, whatever
	// ran on them; nothing may close them while the decision runs.
	time.Sleep(100 * time.Millisecond)
	if slow.closed.Load() {
		t.Error("the replaced engine closed under a decision in flight")
	}
	// New decisions go to the new revision meanwhile.
	if d := decide(t, s, policy.ActionServe, policy.Input{Reference: digestRef("docker.io")}); d.Allow {
		t.Errorf("new revision: %+v", d)
	}
	close(slow.gate)
	if d := <-got; d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != "slow deny" {
		t.Errorf("in-flight decision across a reload = %+v, want the old engine's deny", d)
	}
	waitFor(t, slow.closed.Load)

	// Close retires the serving revision: later decisions deny, whatever
	// fail-open says, and reloads are refused.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, opened[0].closed.Load)
	d, err := s.Decide(t.Context(), policy.ActionServe, policy.Input{Reference: digestRef("docker.io")})
	if err != nil || d.Allow || !strings.Contains(strings.Join(d.Reasons, ""), policy.CodeClosed) {
		t.Errorf("after Close: %+v, %v", d, err)
	}
	if err := s.Reload(t.Context()); policy.ErrorCode(err) != policy.CodeClosed {
		t.Errorf("Reload after Close: %v", err)
	}
}

// TestSet_ReloadStormNeverAllowsByClose: decisions racing many reloads
// never run on a closed engine (which, fail-open, would allow).
func TestSet_ReloadStormNeverAllowsByClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := writeFile(t, dir, "guard.wasm", "0")
	open := func(context.Context, string, []byte, map[string]any) (policy.Engine, error) {
		return &closingEngine{}, nil
	}
	s, err := policy.Load(t.Context(), []string{w}, policy.WithWasm(open), policy.WithFailOpen(true), policy.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var allows, decisions atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, _ := s.Decide(ctx, policy.ActionServe, policy.Input{Reference: digestRef("docker.io")})
				decisions.Add(1)
				if d.Allow {
					allows.Add(1)
				}
			}
		})
	}
	for i := range 200 {
		writeFile(t, dir, "guard.wasm", string(rune('a'+i%26))+strings.Repeat("x", i))
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if allows.Load() != 0 {
		t.Errorf("%d of %d decisions allowed: they ran on a closed engine", allows.Load(), decisions.Load())
	}
}
