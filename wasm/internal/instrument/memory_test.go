package instrument

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// importMemModule is, by hand, the shape of OPA's compiled modules:
//
//	(module
//	  (import "env" "f" (func))
//	  (import "env" "memory" (memory 2))
//	  (func (export "spin") (loop $l (br $l)))
//	  (export "memory" (memory 0)))
var importMemModule = []byte{
	0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
	0x02, 0x17, 0x02, // import: two
	0x03, 'e', 'n', 'v', 0x01, 'f', 0x00, 0x00, // env.f: func type 0
	0x03, 'e', 'n', 'v', 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, 0x02, // env.memory: min 2
	0x03, 0x02, 0x01, 0x00, // func: one of type 0
	0x07, 0x11, 0x02, // export: two
	0x04, 's', 'p', 'i', 'n', 0x00, 0x01,
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x0A, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0C, 0x00, 0x0B, 0x0B, // loop br 0 end end
}

// TestModule_DefineImportedMemory: with the option, an imported memory
// becomes a memory of the module (same minimum, index 0, no import), so
// each instance owns one under the runtime's cap; without it the module
// is left alone. The interrupt still stops its loop (memory.grow 0 on the
// defined memory).
func TestModule_DefineImportedMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain, err := Module(importMemModule, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.DefinedMemory {
		t.Error("DefinedMemory without the option")
	}
	res, err := Module(importMemModule, Limits{DefineImportedMemory: true, MemoryBytes: 4 * PageBytes})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DefinedMemory {
		t.Error("DefinedMemory = false")
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(4))
	defer func() { _ = rt.Close(ctx) }()
	if _, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().WithFunc(func() {}).Export("f").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	cm, err := rt.CompileModule(ctx, res.Module)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cm.ImportedMemories()); n != 0 {
		t.Errorf("%d imported memories after the rewrite", n)
	}
	if n := len(cm.ImportedFunctions()); n != 1 {
		t.Errorf("%d imported functions, want 1", n)
	}
	for range 2 { // two instances, two memories
		mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		if got := mod.Memory().Size(); got != 2*PageBytes {
			t.Errorf("memory of %d bytes, want %d", got, 2*PageBytes)
		}
		if _, ok := mod.Memory().Grow(3); ok {
			t.Error("memory grew past the runtime's cap")
		}
	}
	// Over the cap at its minimum: refused before wazero sees it.
	if _, err := Module(importMemModule, Limits{DefineImportedMemory: true, MemoryBytes: PageBytes}); !errors.Is(err, ErrLimit) {
		t.Errorf("memory minimum over the cap: %v, want ErrLimit", err)
	}
}
