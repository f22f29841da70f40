package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluice-oci/sluice/wasm/internal/abi"
)

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// newRuntime returns a runtime with the limits of cfg (linear memory capped
// at memPages), WASI preview 1 and
// the sluice host module. Guests are stopped by their instance's watchdog
// (watchdog.go) through the loop checks that internal/instrument inserts,
// not by wazero's WithCloseOnContextDone, whose checks cost far more.
func newRuntime(ctx context.Context, cfg *config, memPages uint32, module string, log *slog.Logger) (wazero.Runtime, error) {
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(memPages).
		WithCompilationCache(cfg.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	_, err := rt.NewHostModuleBuilder(abi.HostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(hostLog(module, log), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export(abi.HostLog).
		Instantiate(ctx)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate host module %s: %w", abi.HostModule, err)
	}
	return rt, nil
}

// hostLog implements sluice.log(level, ptr, len): the message is logged at
// slog.Level(level), truncated to abi.MaxLogLen. A pointer outside guest
// memory fails the call with CodeOutOfBounds.
func hostLog(module string, log *slog.Logger) api.GoModuleFunc {
	return func(ctx context.Context, m api.Module, stack []uint64) {
		level, ptr, n := slog.Level(int32(stack[0])), uint32(stack[1]), uint32(stack[2])
		n = min(n, abi.MaxLogLen)
		b, ok := m.Memory().Read(ptr, n)
		if !ok {
			panic(&Error{Module: module, Code: CodeOutOfBounds,
				Err: fmt.Errorf("sluice.log: message [%d, %d) outside guest memory of %d bytes", ptr, uint64(ptr)+uint64(n), m.Memory().Size())})
		}
		if log.Enabled(ctx, level) {
			log.Log(ctx, level, string(b), "module", module, "source", "guest")
		}
	}
}

// checkABI refuses at load a module whose exports or imports do not match
// ABI v1, naming what is wrong.
func checkABI(cm wazero.CompiledModule) error {
	type sig struct {
		params, results []api.ValueType
		optional        bool
	}
	want := map[string]sig{
		abi.ExportVersion:       {nil, []api.ValueType{i32}, false},
		abi.ExportAlloc:         {[]api.ValueType{i32}, []api.ValueType{i32}, false},
		abi.ExportDecide:        {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}, false},
		abi.ExportConfigure:     {[]api.ValueType{i32, i32}, []api.ValueType{i32}, true},
		abi.ExportDecideCompact: {[]api.ValueType{i32, i32}, []api.ValueType{i64}, true},
	}
	exports := cm.ExportedFunctions()
	for _, name := range []string{abi.ExportVersion, abi.ExportAlloc, abi.ExportDecide, abi.ExportConfigure, abi.ExportDecideCompact} {
		w := want[name]
		def, ok := exports[name]
		if !ok {
			if w.optional {
				continue
			}
			return fmt.Errorf("missing export %s (not a sluice ABI v%d module; build it with the sluice sdk)", name, abi.Version)
		}
		if !slices.Equal(def.ParamTypes(), w.params) || !slices.Equal(def.ResultTypes(), w.results) {
			return fmt.Errorf("export %s has signature %s, want %s", name, signature(def.ParamTypes(), def.ResultTypes()), signature(w.params, w.results))
		}
	}
	if _, ok := cm.ExportedMemories()[abi.ExportMemory]; !ok {
		return fmt.Errorf("missing exported memory %q", abi.ExportMemory)
	}
	if len(cm.ImportedMemories()) > 0 {
		return fmt.Errorf("module imports a memory; ABI v%d guests own their memory", abi.Version)
	}
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case abi.HostModule:
			if name != abi.HostLog {
				return fmt.Errorf("module imports %s.%s; the host provides only %s.%s", mod, name, abi.HostModule, abi.HostLog)
			}
		default:
			return fmt.Errorf("module imports %s.%s; the host provides only %s and %s", mod, name, wasi_snapshot_preview1.ModuleName, abi.HostModule)
		}
	}
	return nil
}

func signature(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = api.ValueTypeName(t)
		}
		return out
	}
	return fmt.Sprintf("(%v) -> (%v)", names(params), names(results))
}

// logWriter turns a guest's stdout or stderr into log lines. It also
// notices the Go runtime's "out of memory" fatal error, which tells a
// memory-cap kill from other exits.
//
// A guest can make one fd_write hand it the same large buffer millions of
// times (iovecs are cheap), far more work than its deadline allows, and
// fd_write does not look at the deadline: once the instance's watchdog
// has fired, Write fails (fd_write returns EIO to the guest, which then
// traps at the check after the host call).
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	stream string
	line   []byte
	oom    bool
	wd     *watchdog // set once the instance has one
}

var (
	outOfMemory    = []byte("out of memory")
	errInterrupted = errors.New("guest interrupted")
)

func (w *logWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.wd != nil && w.wd.fired.Load() {
			return n - len(p), errInterrupted
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.line = append(w.line, p[:min(len(p), abi.MaxLogLen-len(w.line))]...)
			if len(w.line) >= abi.MaxLogLen {
				w.flush()
			}
			break
		}
		w.line = append(w.line, p[:min(i, abi.MaxLogLen-len(w.line))]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *logWriter) flush() {
	if bytes.Contains(w.line, outOfMemory) {
		w.oom = true
	}
	w.log.Log(context.Background(), w.level, string(w.line), "stream", w.stream, "source", "guest")
	w.line = w.line[:0]
}
