package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm/internal/abi"
	"github.com/sluice-oci/sluice/wasm/internal/instrument"
)

// minInputBuffer is the first input buffer asked of a new instance.
const minInputBuffer = 4 << 10

// instance is one instantiated guest. It is not safe for concurrent use:
// the pool hands it to one caller at a time.
type instance struct {
	e      *Engine
	mod    api.Module
	mem    api.Memory
	alloc  api.Function
	decide api.Function
	// compact is sluice_decide_compact when the guest exports it (and the
	// engine may use it): the fast path, without JSON.
	compact api.Function
	stdout  *logWriter
	stderr  *logWriter
	// volatile is set when the guest reads a clock or random bytes (the
	// host's clock and random source below): the decision of that call
	// may change with no change of input and must not be cached.
	volatile bool
	wd       *watchdog
	o        *opaInstance // an OPA-compiled module (opa_instance.go)

	stack [4]uint64
	ptr   uint32 // input buffer in guest memory, from sluice_alloc
	cap   uint32
	buf   []byte // host-side encoding of action + input
}

// newInstance instantiates the module, runs its start function and
// _initialize, checks the ABI version, hands the data document to
// sluice_configure when exported and reserves the input buffer. The work
// has its own deadline (WithInitTimeout), so that a short decision
// deadline does not starve instantiation, and is not canceled with ctx.
func (e *Engine) newInstance(ctx context.Context) (*instance, error) {
	ctx = context.WithoutCancel(ctx)
	log := e.log.With("module", e.name)
	x := &instance{
		e:      e,
		stdout: &logWriter{log: log, level: slog.LevelInfo, stream: "stdout"},
		stderr: &logWriter{log: log, level: slog.LevelWarn, stream: "stderr"},
	}
	mc := wazero.NewModuleConfig().
		WithName("").         // anonymous: many instances of one module
		WithStartFunctions(). // run by init, under the watchdog
		WithStdout(x.stdout).
		WithStderr(x.stderr).
		WithWalltime(x.walltime, sys.ClockResolution(time.Microsecond.Nanoseconds())).
		WithNanotime(x.nanotime, 1).
		WithRandSource(volatileReader{x})
	mod, err := e.rt.InstantiateModule(ctx, e.compiled, mc)
	if err != nil {
		return nil, e.newError(CodeInstantiate, err)
	}
	x.mod, x.mem = mod, mod.Memory()
	x.alloc = mod.ExportedFunction(abi.ExportAlloc)
	x.decide = mod.ExportedFunction(abi.ExportDecide)
	if !e.cfg.jsonOnly {
		x.compact = mod.ExportedFunction(abi.ExportDecideCompact)
	}
	interrupt, ok := mod.ExportedGlobal(instrument.InterruptExport).(api.MutableGlobal)
	if !ok {
		_ = mod.Close(ctx)
		return nil, e.newError(CodeInstantiate, fmt.Errorf("instrumented module lacks the mutable global %s", instrument.InterruptExport))
	}
	x.wd = newWatchdog(interrupt)
	x.stdout.wd, x.stderr.wd = x.wd, x.wd
	x.wd.arm(nil, e.cfg.initTimeout)
	if e.opa != nil {
		err = x.initOPA(ctx)
	} else {
		err = x.init(ctx)
	}
	x.wd.disarm()
	if err != nil {
		x.close()
		return nil, err
	}
	return x, nil
}

func (x *instance) init(ctx context.Context) error {
	e := x.e
	for _, name := range []string{instrument.StartExport, abi.StartFunction} {
		if f := x.mod.ExportedFunction(name); f != nil {
			if _, err := f.Call(ctx); err != nil {
				code := x.classify(err)
				if code == CodeTrap || code == CodeExit {
					code = CodeInstantiate
				}
				return e.newError(code, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	res, err := x.mod.ExportedFunction(abi.ExportVersion).Call(ctx)
	if err != nil {
		return e.newError(x.classify(err), fmt.Errorf("%s: %w", abi.ExportVersion, err))
	}
	if v := int32(res[0]); v != abi.Version {
		return e.newError(CodeABIVersion, fmt.Errorf("module speaks sluice Wasm ABI v%d; this host speaks v%d (rebuild the module against a matching sdk)", v, abi.Version))
	}
	if configure := x.mod.ExportedFunction(abi.ExportConfigure); configure != nil {
		if err := x.reserve(ctx, len(e.data)); err != nil {
			return err
		}
		if !x.mem.Write(x.ptr, e.data) {
			return e.newError(CodeOutOfBounds, fmt.Errorf("data buffer at %d outside guest memory", x.ptr))
		}
		res, err := configure.Call(ctx, uint64(x.ptr), uint64(len(e.data)))
		if err != nil {
			return e.newError(x.classify(err), fmt.Errorf("%s: %w", abi.ExportConfigure, err))
		}
		if rc := int32(res[0]); rc != 0 {
			return e.newError(CodeConfigure, fmt.Errorf("%s returned %d (see the guest log)", abi.ExportConfigure, rc))
		}
		x.ptr, x.cap = 0, 0 // the guest may drop the data buffer now
	}
	return x.reserve(ctx, minInputBuffer)
}

// reserve makes the input buffer at least n bytes long, asking the guest
// for a new one (sluice_alloc) when it is too small.
func (x *instance) reserve(ctx context.Context, n int) error {
	if n <= int(x.cap) {
		return nil
	}
	size := max(uint64(n), 2*uint64(x.cap), minInputBuffer)
	x.stack[0] = size
	if err := x.alloc.CallWithStack(ctx, x.stack[:]); err != nil {
		return x.e.newError(x.classify(err), fmt.Errorf("%s(%d): %w", abi.ExportAlloc, size, err))
	}
	ptr := uint32(x.stack[0])
	if ptr == 0 || uint64(ptr)+size > uint64(x.mem.Size()) {
		return x.e.newError(CodeOutOfBounds, fmt.Errorf("%s(%d) returned %d, outside guest memory of %d bytes", abi.ExportAlloc, size, ptr, x.mem.Size()))
	}
	x.ptr, x.cap = ptr, uint32(size)
	return nil
}

// call runs one decision in the guest, interrupted by the watchdog after
// the engine's timeout or when ctx is done. volatile reports that the
// guest read a clock or random bytes meanwhile.
func (x *instance) call(ctx context.Context, action policy.Action, in *policy.Input) (d policy.Decision, volatile bool, err error) {
	x.volatile = false
	x.wd.arm(ctx, x.e.cfg.timeout)
	d, err = x.callGuest(ctx, action, in)
	x.wd.disarm()
	return d, x.volatile, err
}

// The clocks and random source of the guest (WASI clock_time_get,
// random_get) note that the guest read them. Each instance serves one
// call at a time, on the caller's goroutine.

func (x *instance) walltime() (int64, int32) {
	x.volatile = true
	now := time.Now()
	return now.Unix(), int32(now.Nanosecond())
}

func (x *instance) nanotime() int64 {
	x.volatile = true
	return int64(time.Since(x.e.epoch))
}

type volatileReader struct{ x *instance }

func (r volatileReader) Read(p []byte) (int, error) {
	r.x.volatile = true
	return rand.Read(p)
}

func (x *instance) callGuest(ctx context.Context, action policy.Action, in *policy.Input) (policy.Decision, error) {
	e := x.e
	if x.o != nil {
		return x.callOPA(ctx, action, in)
	}
	fn, name := x.decide, abi.ExportDecide
	if x.compact != nil {
		fn, name = x.compact, abi.ExportDecideCompact
		x.buf = abi.AppendCompact(x.buf[:0], action, in)
	} else {
		in.Action = action
		x.buf = append(x.buf[:0], action...)
		x.buf = abi.AppendInput(x.buf, in)
	}
	if err := x.reserve(ctx, len(x.buf)); err != nil {
		return policy.Decision{}, err
	}
	if !x.mem.Write(x.ptr, x.buf) {
		return policy.Decision{}, e.newError(CodeOutOfBounds, fmt.Errorf("input buffer at %d outside guest memory", x.ptr))
	}
	if x.compact != nil {
		x.stack = [4]uint64{uint64(x.ptr), uint64(len(x.buf))}
	} else {
		alen := uint64(len(action))
		x.stack = [4]uint64{uint64(x.ptr), alen, uint64(x.ptr) + alen, uint64(len(x.buf)) - alen}
	}
	if err := fn.CallWithStack(ctx, x.stack[:]); err != nil {
		return policy.Decision{}, e.newError(x.classify(err), fmt.Errorf("%s: %w", name, err))
	}
	ptr, n := abi.Unpack(x.stack[0])
	if n > abi.MaxResultLen {
		return policy.Decision{}, e.newError(CodeBadResult, fmt.Errorf("decision of %d bytes exceeds %d", n, abi.MaxResultLen))
	}
	b, ok := x.mem.Read(ptr, n)
	if !ok {
		return policy.Decision{}, e.newError(CodeOutOfBounds, fmt.Errorf("decision [%d, %d) outside guest memory of %d bytes", ptr, uint64(ptr)+uint64(n), x.mem.Size()))
	}
	if string(b) == `{"allow":true}` { // the common answer, as the SDK writes it
		return policy.Decision{Allow: true}, nil
	}
	d, err := abi.ParseDecision(b)
	if err != nil {
		return policy.Decision{}, e.newError(CodeBadResult, err)
	}
	return d, nil
}

// classify maps an error of a guest call to a code.
func (x *instance) classify(err error) Code {
	if c := x.wd.interrupted(); c != "" {
		return c // the watchdog stopped the guest: it trapped on purpose
	}
	if c := CodeOf(err); c != "" {
		return c // raised by a host function
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return CodeTimeout
		case sys.ExitCodeContextCanceled:
			return CodeCanceled
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case x.atMemoryCap():
		return CodeMemoryLimit
	case exit != nil:
		return CodeExit
	}
	return CodeTrap
}

// atMemoryCap reports whether the guest died of memory exhaustion: the Go
// runtime said so, or memory is within one Go heap arena (4 MiB) of the cap.
func (x *instance) atMemoryCap() bool {
	const margin = 4 << 20
	limit := uint64(x.e.memPages) << 16
	return x.stderr.oom || uint64(x.mem.Size())+margin >= limit
}

func (x *instance) close() {
	if x.e.opa != nil {
		x.e.opa.track(x.mod, nil)
	}
	x.wd.close()
	_ = x.mod.Close(context.Background())
}
