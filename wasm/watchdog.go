package wasm

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// watchdog stops one instance's guest code when its deadline passes or the
// caller's context is done, by setting the interrupt global that the
// instrumented module checks at every loop header (internal/instrument):
// the guest then traps, and the call fails with the watchdog's code.
//
// It replaces wazero's WithCloseOnContextDone, which compiles every loop
// header into an exit to Go and starts a goroutine per call. The timer is
// made once per instance and re-armed per call; the caller's context is
// watched with context.AfterFunc only when it can be done.
type watchdog struct {
	interrupt api.MutableGlobal
	timer     *time.Timer
	onCtxDone func() // w.ctxDone, bound once

	mu       sync.Mutex // guards the fields below and the interrupt global
	armed    bool
	cause    Code
	ctx      context.Context
	deadline time.Time

	stopCtx func() bool

	// fired is set with the interrupt and cleared by disarm: host code
	// working for the guest (fd_write) reads it without the lock.
	fired atomic.Bool
}

func newWatchdog(interrupt api.MutableGlobal) *watchdog {
	w := &watchdog{interrupt: interrupt}
	w.timer = time.AfterFunc(time.Hour, w.deadlinePassed)
	w.timer.Stop()
	w.onCtxDone = w.ctxDone
	return w
}

// arm starts watching one guest call: it is interrupted after timeout, or
// when ctx is done (nil: not watched). Every arm is followed by disarm.
func (w *watchdog) arm(ctx context.Context, timeout time.Duration) {
	w.mu.Lock()
	w.armed, w.cause, w.ctx, w.deadline = true, "", ctx, time.Now().Add(timeout)
	w.mu.Unlock()
	w.timer.Reset(timeout)
	if ctx != nil && ctx.Done() != nil {
		w.stopCtx = context.AfterFunc(ctx, w.onCtxDone)
	}
}

// disarm ends the watch and returns why the guest was interrupted ("" if
// it was not). A guest that finished before noticing the interrupt is fine
// to use again: the global is cleared here.
func (w *watchdog) disarm() Code {
	w.timer.Stop()
	if w.stopCtx != nil {
		w.stopCtx()
		w.stopCtx = nil
	}
	w.mu.Lock()
	cause := w.cause
	if cause != "" {
		w.interrupt.Set(0)
		w.fired.Store(false)
	}
	w.armed, w.cause, w.ctx = false, "", nil
	w.mu.Unlock()
	return cause
}

// A callback of an earlier call may run late, during the next one: each
// checks, under mu, that its reason holds for the call armed now.

func (w *watchdog) deadlinePassed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && !time.Now().Before(w.deadline) {
		w.fire(CodeTimeout)
	}
}

func (w *watchdog) ctxDone() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || w.ctx == nil {
		return
	}
	switch err := w.ctx.Err(); {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		w.fire(CodeTimeout)
	default:
		w.fire(CodeCanceled)
	}
}

// fire interrupts the guest; mu is held.
func (w *watchdog) fire(code Code) {
	if w.cause == "" {
		w.cause = code
		w.interrupt.Set(1)
		w.fired.Store(true)
	}
}

// interrupted returns the cause of an interrupt of the armed call, or "".
func (w *watchdog) interrupted() Code {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cause
}

// close stops the timer for good.
func (w *watchdog) close() {
	w.timer.Stop()
}
