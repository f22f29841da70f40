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

// FuzzModule checks that untrusted bytes never panic the rewriter.
func FuzzModule(f *testing.F) {
	f.Add(spinModule)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Module(b, Limits{})
	})
}
