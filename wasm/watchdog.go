package wasm

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// ctxPoll is how often a running call looks at its caller's context: a
// cancellation is noticed at most this long after it happens.
const ctxPoll = time.Millisecond

// watchdog stops one instance's guest code when its deadline passes or the
// caller's context is done, by setting the interrupt global that the
// instrumented module checks at every loop header (internal/instrument):
// the guest then traps, and the call fails with the watchdog's code.
//
// It replaces wazero's WithCloseOnContextDone, which compiles every loop
// header into an exit to Go and starts a goroutine per call.
//
// A decision takes microseconds and its deadline is milliseconds away, so
// the watchdog is lazy: arm and disarm only record the call; one timer,
// made once per instance, checks the call armed when it fires. It is
// started when no check is pending, and moved only when the pending check
// comes later than the new call needs (a caller's deadline shorter than
// the pending one). A check that finds the call of its time finished but
// another armed re-arms for that one; one that finds the instance idle
// lets the timer stop. A back-to-back stream of calls costs one timer run
// per deadline (or per ctxPoll when callers' contexts can be canceled),
// not a timer reset and a context.AfterFunc per call.
//
// The states (all under mu): idle (not armed, possibly a check pending),
// armed (a check pending at or before the next thing to look at: the
// deadline, or the next context poll), fired (cause set, interrupt set;
// until disarm).
type watchdog struct {
	interrupt api.MutableGlobal
	timer     *time.Timer
	epoch     time.Time // zero of the monotonic times below

	mu       sync.Mutex      // guards the fields below and the interrupt global
	armed    bool            // a call runs
	cause    Code            // why it was interrupted; "" while not
	ctx      context.Context // the caller's, when it can be done; else nil
	deadline time.Duration   // of the armed call, since epoch
	pending  bool            // the timer will run check
	due      time.Duration   // when it will, since epoch
	closed   bool            // the timer is stopped for good

	// fired is set with the interrupt and cleared by disarm: host code
	// working for the guest (fd_write) reads it without the lock.
	fired atomic.Bool
}

func newWatchdog(interrupt api.MutableGlobal) *watchdog {
	w := &watchdog{interrupt: interrupt, epoch: time.Now()}
	w.timer = time.AfterFunc(time.Hour, w.check)
	w.timer.Stop()
	return w
}

// arm starts watching one guest call: it is interrupted after timeout (or
// at ctx's deadline, when that is sooner), or when ctx is done (nil: not
// watched). Every arm is followed by disarm.
func (w *watchdog) arm(ctx context.Context, timeout time.Duration) {
	now := time.Since(w.epoch) // monotonic only: cheaper than time.Now
	deadline := now + timeout
	var watch context.Context
	if ctx != nil && ctx.Done() != nil {
		watch = ctx
		if d, ok := ctx.Deadline(); ok {
			deadline = min(deadline, now+time.Until(d))
		}
	}
	w.mu.Lock()
	w.armed, w.cause, w.ctx, w.deadline = true, "", watch, deadline
	w.schedule(now)
	w.mu.Unlock()
}

// schedule makes sure that check runs by the next time the armed call
// needs looking at; mu is held.
func (w *watchdog) schedule(now time.Duration) {
	next := w.deadline
	if w.ctx != nil {
		next = min(next, now+ctxPoll)
	}
	if w.closed || w.pending && w.due <= next {
		return // the pending check comes soon enough; it re-arms if needed
	}
	w.pending, w.due = true, next
	w.timer.Reset(max(next-now, 0))
}

// disarm ends the watch and returns why the guest was interrupted ("" if
// it was not). A guest that finished before noticing the interrupt is fine
// to use again: the global is cleared here. A pending check stays: it
// finds the instance idle, or the next call armed.
func (w *watchdog) disarm() Code {
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

// check runs on the timer's goroutine. It may run late, or twice (a
// reset racing a run): it acts only on what holds for the call armed now.
func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = false
	if !w.armed || w.cause != "" {
		return // idle, or already interrupted: the timer may stop
	}
	now := time.Since(w.epoch)
	if now >= w.deadline {
		w.fire(CodeTimeout)
		return
	}
	if w.ctx != nil {
		switch err := w.ctx.Err(); {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			w.fire(CodeTimeout)
			return
		default:
			w.fire(CodeCanceled)
			return
		}
	}
	w.schedule(now)
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
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed, w.closed = false, true
	w.timer.Stop()
}
