// Package wasm runs sluice policies compiled to WebAssembly (ABI v1, see
// ABI.md) with wazero. Each module is compiled once and served by a bounded
// pool of instances; every call has a deadline and a memory cap, and a
// guest that traps, loops, exhausts memory or returns garbage fails that
// one decision with a coded *Error — it never takes the process down, and
// the broken instance is discarded.
//
// The policy facade opens .wasm files through Opener:
//
//	policy.Load(ctx, paths, policy.WithWasm(wasm.Opener(wasm.WithLogger(log), wasm.WithRegisterer(reg))))
package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm/internal/instrument"
	"github.com/sluice-oci/sluice/wasm/internal/pool"
)

// ErrClosed is the cause of CodeClosed errors.
var ErrClosed = errors.New("engine closed")

// Engine is a policy.Engine backed by one Wasm module.
type Engine struct {
	name     string
	cfg      config
	log      *slog.Logger
	errs     *prometheus.CounterVec
	data     []byte // JSON data document for sluice_configure
	memPages uint32 // linear memory cap: the configured cap less the tables
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	ownCache bool
	pool     *pool.Pool[*instance]
	epoch    time.Time // zero of the guests' monotonic clock
	opa      *opaState // an OPA-compiled module (opa.go); nil: sluice ABI

	mu     sync.RWMutex // held for reading by calls, for writing by Close
	closed bool
}

var _ policy.VolatileEngine = (*Engine)(nil)

// OpenFunc is the signature policy.WithWasm takes.
type OpenFunc = func(ctx context.Context, path string, module []byte, data map[string]any) (policy.Engine, error)

// Opener returns an OpenFunc that makes an Engine for each module, labelled
// by the file's base name. Engines it opens share a compilation cache, so a
// reload of an unchanged module does not compile again.
func Opener(opts ...Option) OpenFunc {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	cache := cfg.cache
	if cache == nil {
		cache = wazero.NewCompilationCache()
	}
	opts = append(opts[:len(opts):len(opts)], WithCompilationCache(cache))
	return func(ctx context.Context, path string, module []byte, data map[string]any) (policy.Engine, error) {
		e, err := New(ctx, filepath.Base(path), module, data, opts...)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
}

// New compiles module, checks its ABI and fills the instance pool. data is
// the data document (as data.* in Rego), handed once to every instance
// through sluice_configure; nil is sent as {}. name labels logs, metrics
// and errors.
func New(ctx context.Context, name string, module []byte, data map[string]any, opts ...Option) (*Engine, error) {
	e := &Engine{name: name, cfg: defaults(), epoch: time.Now()}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.log = e.cfg.logger
	errs, err := newErrorCounter(e.cfg.registerer)
	if err != nil {
		return nil, fmt.Errorf("wasm policy %s: register metrics: %w", name, err)
	}
	e.errs = errs
	if data == nil {
		data = map[string]any{}
	}
	if e.data, err = json.Marshal(data); err != nil {
		return nil, e.newError(CodeConfigure, fmt.Errorf("encode data document: %w", err))
	}
	// The bounded pre-parse runs before wazero sees a byte: bytes it
	// refuses are never compiled (wazero allocates what a module declares,
	// and a failed allocation kills the process).
	inst, err := instrument.Module(module, instrument.Limits{
		MemoryBytes:          uint64(e.cfg.memPages) * instrument.PageBytes,
		DefineImportedMemory: true, // OPA modules import env.memory
	})
	if err != nil {
		return nil, e.newError(instrumentCode(err), err)
	}
	if inst.DefinedMemory {
		e.opa = &opaState{instances: map[api.Module]*instance{}, metrics: metrics.NoOp()}
	}
	if e.cfg.cache == nil {
		e.cfg.cache, e.ownCache = wazero.NewCompilationCache(), true
	}
	// Tables live on the Go heap beside linear memory: their maxima come
	// off the memory cap (the pre-parse checked that the memory's minimum
	// still fits).
	e.memPages = max(e.cfg.memPages-uint32(instrument.TablePages(inst.TableBytes)), 1)
	if e.rt, err = newRuntime(ctx, &e.cfg, e.memPages, name, e.log); err != nil {
		e.closeCache(ctx)
		return nil, e.newError(CodeInstantiate, err)
	}
	if e.opa != nil {
		if err := e.newOPAHost(ctx); err != nil {
			_ = e.rt.Close(ctx)
			e.closeCache(ctx)
			return nil, e.newError(CodeInstantiate, fmt.Errorf("instantiate host module %s: %w", opaEnv, err))
		}
	}
	if err := e.load(ctx, inst.Module); err != nil {
		_ = e.rt.Close(ctx)
		e.closeCache(ctx)
		return nil, err
	}
	return e, nil
}

// instrumentCode is the code of a pre-parse refusal.
func instrumentCode(err error) Code {
	switch {
	case errors.Is(err, instrument.ErrLimit):
		return CodeLimit
	case errors.Is(err, instrument.ErrUnsupported):
		return CodeABI
	}
	return CodeCompile
}

// load compiles the instrumented module, checks its ABI and fills the pool.
func (e *Engine) load(ctx context.Context, module []byte) error {
	var err error
	if e.compiled, err = e.rt.CompileModule(ctx, module); err != nil {
		return e.newError(CodeCompile, err)
	}
	check := checkABI
	if e.opa != nil {
		check = checkOPAABI
	}
	if err := check(e.compiled); err != nil {
		return e.newError(CodeABI, err)
	}
	e.pool = pool.New(e.cfg.poolSize, e.newInstance, (*instance).close)
	// Fill the pool now: load-time errors (ABI version, configure) surface
	// here, and the first decisions do not pay for instantiation.
	warm := make([]*instance, 0, e.pool.Max())
	defer func() {
		for _, x := range warm {
			e.pool.Put(x)
		}
	}()
	for range e.pool.Max() {
		x, err := e.pool.Get(ctx)
		if err != nil {
			return err
		}
		warm = append(warm, x)
	}
	return nil
}

// Decide runs the module's sluice_decide for action and in. Any failure
// is an *Error (errors.As), counted in sluice_wasm_errors_total; the
// facade treats it as a deny unless fail-open.
func (e *Engine) Decide(ctx context.Context, action policy.Action, in policy.Input) (policy.Decision, error) {
	d, _, err := e.DecideVolatile(ctx, action, in)
	return d, err
}

// DecideVolatile is Decide, and reports whether the guest read a clock or
// random bytes during the call (WASI clock_time_get, random_get): such a
// decision may change with no change of input, and policy.Set does not
// cache it.
func (e *Engine) DecideVolatile(ctx context.Context, action policy.Action, in policy.Input) (policy.Decision, bool, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return policy.Decision{}, false, e.newError(CodeClosed, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return policy.Decision{}, false, e.newError(ctxCode(err), err)
	}
	x, ok := e.pool.TryGet()
	if !ok {
		// Waiting for an instance (and making one, when a broken one was
		// discarded) is bounded by the timeout too, but the guest gets a
		// full timeout of its own: the deadline limits guest execution.
		waitCtx, cancelWait := context.WithTimeout(ctx, e.cfg.timeout)
		var err error
		x, err = e.pool.Get(waitCtx)
		cancelWait()
		if err != nil {
			if CodeOf(err) != "" {
				return policy.Decision{}, false, err
			}
			return policy.Decision{}, false, e.newError(ctxCode(err), fmt.Errorf("wait for an instance: %w", err))
		}
	}
	d, volatile, err := x.call(ctx, action, &in)
	if err != nil {
		e.pool.Discard(x)
		return policy.Decision{}, volatile, err
	}
	e.pool.Put(x)
	return d, volatile, nil
}

func ctxCode(err error) Code {
	if errors.Is(err, context.Canceled) {
		return CodeCanceled
	}
	return CodeTimeout
}

// EngineName is the engine label of policy metrics.
func (e *Engine) EngineName() string {
	if e.opa != nil {
		return "opa_wasm"
	}
	return "wasm"
}

// Module is the name the engine was opened with.
func (e *Engine) Module() string { return e.name }

// Close waits for decisions in flight (each bounded by its deadline),
// then frees every instance and the compiled module. Later calls fail
// with CodeClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	ctx := context.Background()
	e.pool.Close()
	err := e.rt.Close(ctx)
	e.closeCache(ctx)
	return err
}

func (e *Engine) closeCache(ctx context.Context) {
	if e.ownCache {
		_ = e.cfg.cache.Close(ctx)
	}
}

// newError wraps err with the engine's name and code, counts it and logs it.
func (e *Engine) newError(code Code, err error) error {
	var ee *Error
	if errors.As(err, &ee) && ee.Code == code {
		ee.Module = e.name
	} else {
		ee = &Error{Module: e.name, Code: code, Err: err}
	}
	e.errs.WithLabelValues(e.name, string(code)).Inc()
	e.log.Warn("wasm policy error", "module", e.name, "code", string(code), "err", err)
	return ee
}
