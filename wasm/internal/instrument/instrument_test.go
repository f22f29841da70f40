package instrument

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// spinModule is, by hand:
//
//	(module
//	  (memory 1)
//	  (global $g (mut i32) (i32.const 0))
//	  (func $spin (loop $l (br $l)))
//	  (func $init (global.set $g (i32.const 7)))
//	  (start $init)
//	  (export "spin" (func $spin)))
var spinModule = []byte{
	0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
	0x03, 0x03, 0x02, 0x00, 0x00, // func: two of type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // memory 1
	0x06, 0x06, 0x01, 0x7F, 0x01, 0x41, 0x00, 0x0B, // global
	0x07, 0x08, 0x01, 0x04, 's', 'p', 'i', 'n', 0x00, 0x00, // export
	0x08, 0x01, 0x01, // start: func 1
	0x0A, 0x10, 0x02,
	0x07, 0x00, 0x03, 0x40, 0x0C, 0x00, 0x0B, 0x0B, // loop br 0 end end
	0x06, 0x00, 0x41, 0x07, 0x24, 0x00, 0x0B, // i32.const 7 global.set 0 end
}

func TestModule_InterruptsLoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := Module(spinModule, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.HasStart {
		t.Error("HasStart = false")
	}
	rt := wazero.NewRuntime(ctx)
	defer func() { _ = rt.Close(ctx) }()
	mod, err := rt.InstantiateWithConfig(ctx, res.Module, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction(StartExport).Call(ctx); err != nil {
		t.Fatalf("%s: %v", StartExport, err)
	}
	interrupt := mod.ExportedGlobal(InterruptExport).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		done <- err
	}()
	interrupt.Set(1)
	if err := <-done; err == nil {
		t.Fatal("spin returned without error after the interrupt")
	}
}

func TestModule_Refuses(t *testing.T) {
	t.Parallel()
	setsMissingGlobal := append([]byte(nil), spinModule...)
	setsMissingGlobal[len(setsMissingGlobal)-2] = 0x01 // global.set 1: does not exist
	exportsReserved := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
		0x07, 0x14, 0x01, 0x10, 's', 'l', 'u', 'i', 'c', 'e', '.', 'i', 'n', 't', 'e', 'r', 'r', 'u', 'p', 't', 0x03, 0x00}
	for name, m := range map[string][]byte{
		"not wasm":            []byte("#!/bin/sh"),
		"truncated":           spinModule[:len(spinModule)-3],
		"missing global":      setsMissingGlobal,
		"reserved export":     exportsReserved,
		"unknown instruction": append(append([]byte(nil), spinModule[:len(spinModule)-7]...), 0x06, 0x00, 0x41, 0x07, 0x06, 0x00, 0x0B),
	} {
		if _, err := Module(m, Limits{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Module = %v, want ErrInvalid", name, err)
		}
	}
}

// paramsModule is the 24-byte module that killed the node (issue 15 item
// 1): one function type declaring 3×10⁹ parameters, which wazero's decoder
// allocated before reading them.
var paramsModule = []byte{
	0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
	0x01, 0x0E, 0x01, 0x60, 0x80, 0xBC, 0xC1, 0x96, 0x0B, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F,
}

// fuzzLimits are the engine's defaults (OPA modules' memory import
// defined in the module, as the engine asks).
var fuzzLimits = Limits{MemoryBytes: 512 * PageBytes, DefineImportedMemory: true}

// FuzzModule is the differential check of the pre-parse and the rewrite:
// untrusted bytes never panic them; wazero only ever sees what the
// pre-parse accepted, and compiling it never takes the process down (a
// fatal out-of-memory error fails the fuzz run); and a module that wazero
// compiles stays valid once instrumented.
func FuzzModule(f *testing.F) {
	f.Add(spinModule)
	f.Add(paramsModule)
	f.Add(bulkModule)
	f.Add(importMemModule)
	ctx := context.Background()
	// The production configuration, with DWARF off for the original bytes
	// (the instrumented ones carry no .debug_* sections).
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(512).WithDebugInfoEnabled(false))
	f.Cleanup(func() { _ = rt.Close(ctx) })
	compile := func(b []byte) error {
		cm, err := rt.CompileModule(ctx, b)
		if err == nil {
			_ = cm.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := Module(b, fuzzLimits)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Module error %v does not wrap ErrInvalid", err)
			}
			return
		}
		origErr := compile(b)
		instErr := compile(res.Module)
		if origErr == nil && instErr != nil {
			t.Fatalf("a valid module is invalid once instrumented: %v", instErr)
		}
	})
}

// bulkModule is, by hand:
//
//	(module
//	  (memory 1)
//	  (table 2 funcref)
//	  (func $fill (param i32) (memory.fill (i32.const 0) (i32.const 0) (local.get 0)))
//	  (func $grow (param i32) (result i32) (table.grow (ref.null func) (local.get 0)))
//	  (func $host (call $fill (i32.const 1))))
var bulkModule = []byte{
	0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
	0x01, 0x0D, 0x03, 0x60, 0x01, 0x7F, 0x00, 0x60, 0x01, 0x7F, 0x01, 0x7F, 0x60, 0x00, 0x00, // types
	0x03, 0x04, 0x03, 0x00, 0x01, 0x02, // funcs
	0x04, 0x04, 0x01, 0x70, 0x00, 0x02, // table 2, no maximum
	0x05, 0x03, 0x01, 0x00, 0x01, // memory 1
	0x0A, 0x1E, 0x03,
	0x0B, 0x00, 0x41, 0x00, 0x41, 0x00, 0x20, 0x00, 0xFC, 0x0B, 0x00, 0x0B,
	0x09, 0x00, 0xD0, 0x70, 0x20, 0x00, 0xFC, 0x0F, 0x00, 0x0B,
	0x06, 0x00, 0x41, 0x01, 0x10, 0x00, 0x0B,
}

// TestModule_Bulk checks that a module with bulk instructions and host
// calls stays valid once instrumented, and that a table without a maximum
// is held at its minimum and counts against the memory cap.
func TestModule_Bulk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	res, err := Module(bulkModule, Limits{MemoryBytes: 2 * PageBytes})
	if err != nil {
		t.Fatal(err)
	}
	if res.TableBytes != 2*TableEntryBytes {
		t.Errorf("TableBytes = %d, want %d", res.TableBytes, 2*TableEntryBytes)
	}
	rt := wazero.NewRuntime(ctx)
	defer func() { _ = rt.Close(ctx) }()
	if _, err := rt.Instantiate(ctx, res.Module); err != nil {
		t.Fatal(err)
	}
	if _, err := Module(bulkModule, Limits{MemoryBytes: PageBytes}); !errors.Is(err, ErrLimit) {
		t.Errorf("memory of 1 page plus a table under a 1-page cap: %v, want ErrLimit", err)
	}
}
