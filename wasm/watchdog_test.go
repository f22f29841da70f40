package wasm

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// fakeGlobal is the interrupt global of an instance. The embedded
// interface (nil) only supplies wazero's unexported marker method.
type fakeGlobal struct {
	api.MutableGlobal
	v atomic.Uint64
}

func (g *fakeGlobal) Type() api.ValueType { return api.ValueTypeI32 }
func (g *fakeGlobal) Get() uint64         { return g.v.Load() }
func (g *fakeGlobal) Set(v uint64)        { g.v.Store(v) }
func (g *fakeGlobal) String() string      { return "" }

var _ api.MutableGlobal = (*fakeGlobal)(nil)

// waitFired waits (bounded) until the watchdog interrupts the armed call.
func waitFired(t *testing.T, w *watchdog, g *fakeGlobal) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !w.fired.Load(); {
		if time.Now().After(end) {
			t.Fatal("watchdog never fired")
		}
		time.Sleep(time.Millisecond)
	}
	if g.Get() != 1 {
		t.Fatalf("interrupt global = %d with fired set, want 1", g.Get())
	}
}

// One test per transition of the watchdog's state machine (watchdog.go).
func TestWatchdog(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		run  func(t *testing.T, w *watchdog, g *fakeGlobal)
	}{
		{"armed: the deadline passes: timeout", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(nil, 5*time.Millisecond)
			waitFired(t, w, g)
			if c := w.disarm(); c != CodeTimeout {
				t.Fatalf("disarm = %q, want %q", c, CodeTimeout)
			}
		}},
		{"armed: the caller's deadline comes first: timeout", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
			defer cancel()
			w.arm(ctx, time.Hour)
			waitFired(t, w, g)
			if c := w.disarm(); c != CodeTimeout {
				t.Fatalf("disarm = %q, want %q", c, CodeTimeout)
			}
		}},
		{"armed: the caller cancels: canceled", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			ctx, cancel := context.WithCancel(t.Context())
			w.arm(ctx, time.Hour)
			time.Sleep(3 * ctxPoll) // polled a few times, not canceled yet
			if w.fired.Load() {
				t.Fatal("fired before the cancel")
			}
			cancel()
			waitFired(t, w, g)
			if c := w.disarm(); c != CodeCanceled {
				t.Fatalf("disarm = %q, want %q", c, CodeCanceled)
			}
		}},
		{"armed: a context already done: canceled", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(canceled, time.Hour)
			waitFired(t, w, g)
			if c := w.disarm(); c != CodeCanceled {
				t.Fatalf("disarm = %q, want %q", c, CodeCanceled)
			}
		}},
		{"fired: disarm clears the interrupt for the next call", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(nil, time.Millisecond)
			waitFired(t, w, g)
			w.disarm()
			if g.Get() != 0 || w.fired.Load() || w.interrupted() != "" {
				t.Fatalf("after disarm: global %d, fired %v, cause %q; want all clear", g.Get(), w.fired.Load(), w.interrupted())
			}
		}},
		{"armed: disarmed in time: no interrupt, the timer stops", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(nil, 20*time.Millisecond)
			if c := w.disarm(); c != "" {
				t.Fatalf("disarm = %q, want none", c)
			}
			time.Sleep(60 * time.Millisecond) // the pending check ran and found the instance idle
			w.mu.Lock()
			pending := w.pending
			w.mu.Unlock()
			if g.Get() != 0 || w.fired.Load() || pending {
				t.Fatalf("idle: global %d, fired %v, check pending %v; want none", g.Get(), w.fired.Load(), pending)
			}
		}},
		{"idle with a check pending: the next call is watched by it", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			// The first call leaves a check pending at its deadline; the
			// next call, armed before it, is still cut at its own.
			w.arm(nil, 10*time.Millisecond)
			w.disarm()
			start := time.Now()
			w.arm(nil, 30*time.Millisecond)
			waitFired(t, w, g)
			if d := time.Since(start); d < 30*time.Millisecond {
				t.Fatalf("second call cut after %v, before its 30ms deadline", d)
			}
			w.disarm()
		}},
		{"idle with a later check pending: a shorter deadline moves it", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(nil, time.Hour)
			w.disarm()
			w.arm(nil, 5*time.Millisecond)
			waitFired(t, w, g)
			if c := w.disarm(); c != CodeTimeout {
				t.Fatalf("disarm = %q, want %q", c, CodeTimeout)
			}
		}},
		{"armed: a late check of an earlier call spares the new one", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.arm(nil, time.Hour)
			w.disarm()
			w.arm(nil, time.Hour)
			w.check() // as if a check of the first call ran now
			if w.fired.Load() || g.Get() != 0 {
				t.Fatal("a check before the deadline interrupted the call")
			}
			w.disarm()
		}},
		{"closed: no check is scheduled again", func(t *testing.T, w *watchdog, g *fakeGlobal) {
			w.close()
			w.mu.Lock()
			w.armed, w.deadline = true, 0
			w.schedule(time.Since(w.epoch))
			pending := w.pending
			w.mu.Unlock()
			if pending {
				t.Fatal("a closed watchdog scheduled a check")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := &fakeGlobal{}
			w := newWatchdog(g)
			defer w.close()
			tt.run(t, w, g)
		})
	}
}

// BenchmarkWatchdog measures the watch of one short call: arm and disarm
// with a context that can be canceled, as a request's is.
func BenchmarkWatchdog(b *testing.B) {
	w := newWatchdog(&fakeGlobal{})
	defer w.close()
	b.ReportAllocs()
	for b.Loop() {
		w.arm(b.Context(), time.Second)
		w.disarm()
	}
}
