package wasm_test

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

const childTimeout = 2 * time.Minute

var anyInput = policy.Input{Reference: ref("docker.io", "x", "v", ""), Mirrors: []string{"*"}}

// hostileDeclarations are modules whose declarations ask wazero's decoder
// for far more memory than their bytes hold (issue 15 item 1). Before the
// pre-parse, each killed the process with "fatal error: out of memory".
var hostileDeclarations = []struct {
	name   string
	module []byte
	want   wasm.Code
}{
	// 24 bytes: one function type declaring 3×10⁹ parameters.
	{"params", wasmModule([]byte{0x01, 0x0E, 0x01, 0x60, 0x80, 0xBC, 0xC1, 0x96, 0x0B, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F}), wasm.CodeCompile},
	// A type section declaring 2³²−1 types.
	{"types", wasmModule(section(1, cat(uleb(1<<32-1), []byte{0x60, 0x00, 0x00}))), wasm.CodeCompile},
	// One function declaring 2³²−1 i32 locals.
	{"locals", wasmModule(section(1, vec([]byte{0x60, 0x00, 0x00})), section(3, vec(uleb(0))), section(5, vec(pages(1))),
		section(10, vec(cat(uleb(8), []byte{0x01}, uleb(1<<32-1), []byte{0x7F, 0x0B})))), wasm.CodeLimit},
	// Many functions of 50,000 locals each: over the total.
	{"total-locals", manyLocals(100), wasm.CodeLimit},
	// A custom section whose size runs past the end of the module.
	{"custom-size", wasmModule([]byte{0x00, 0xF0, 0xFF, 0xFF, 0xFF, 0x0F, 0x04, 'j', 'u', 'n', 'k'}), wasm.CodeCompile},
	// A name section declaring 2³²−1 function names.
	{"names", wasmModule(section(0, cat(str("name"), []byte{0x01, 0x05}, uleb(1<<32-1)))), wasm.CodeCompile},
	// A data segment of 2³²−1 bytes.
	{"data", wasmModule(section(11, cat(vec(cat([]byte{0x01}, uleb(1<<32-1))), []byte{0x00}))), wasm.CodeCompile},
	// 2³²−1 exports, imports, element entries.
	{"exports", wasmModule(section(7, uleb(1<<32-1))), wasm.CodeCompile},
	{"imports", wasmModule(section(2, uleb(1<<32-1))), wasm.CodeCompile},
	{"elements", wasmModule(section(9, cat(vec(cat([]byte{0x01, 0x00}, uleb(1<<32-1))), []byte{0x00}))), wasm.CodeCompile},
	// Modules whose compile takes minutes to hours (wazero cannot be
	// interrupted while it compiles): 100,000 nested blocks in one
	// function, a br_table of 1,000,000 labels, 990,000 empty functions
	// (27 s and 1.3 GB).
	{"nested-blocks", rawGuest{memory: pages(1), decide: i64Const(allowResult),
		funcs: [][]byte{cat(bytes.Repeat([]byte{0x02, 0x40}, 100_000), bytes.Repeat([]byte{0x0B}, 100_000))}}.bytes(), wasm.CodeLimit},
	{"br_table", rawGuest{memory: pages(1), decide: i64Const(allowResult),
		funcs: [][]byte{cat([]byte{0x02, 0x40, 0x20, 0x00, 0x0E}, uleb(1_000_000), make([]byte, 1_000_001), []byte{0x0B})}}.bytes(), wasm.CodeLimit},
	{"functions", rawGuest{memory: pages(1), decide: i64Const(allowResult), funcs: make([][]byte, 990_000)}.bytes(), wasm.CodeLimit},
}

// manyLocals declares n functions of 50,000 i32 locals each.
func manyLocals(n int) []byte {
	funcs, bodies := make([][]byte, n), make([][]byte, n)
	for i := range n {
		funcs[i] = uleb(0)
		b := cat([]byte{0x01}, uleb(50_000), []byte{0x7F, 0x0B})
		bodies[i] = cat(uleb(uint64(len(b))), b)
	}
	return wasmModule(section(1, vec([]byte{0x60, 0x00, 0x00})), section(3, vec(funcs...)), section(5, vec(pages(1))), section(10, vec(bodies...)))
}

// TestNew_HostileDeclarations checks that a module declaring more than its
// bytes hold is refused with a coded error, in a child process whose
// address space is capped: before the fix the 24-byte "params" module
// killed the node.
func TestNew_HostileDeclarations(t *testing.T) {
	t.Parallel()
	for _, tt := range hostileDeclarations {
		t.Run(tt.name, func(t *testing.T) {
			if !isolate(t, childTimeout) {
				return
			}
			e, err := wasm.New(t.Context(), tt.name, tt.module, nil, wasm.WithPoolSize(1))
			if err == nil {
				_ = e.Close()
				t.Fatal("New accepted the module")
			}
			if got := wasm.CodeOf(err); got != tt.want {
				t.Fatalf("New = %v; want code %s", err, tt.want)
			}
		})
	}
}

// TestEngine_RecursionHonoursDeadline checks that a guest that recurses
// without a loop is stopped at its deadline, and does not hold up the Go
// runtime's stop-the-world meanwhile (issue 15 item 2).
func TestEngine_RecursionHonoursDeadline(t *testing.T) {
	if !isolate(t, childTimeout) {
		return
	}
	// (func $f (param i32) (if (local.get 0) (then
	//   (call $f (i32.sub (local.get 0) (i32.const 1)))
	//   (call $f (i32.sub (local.get 0) (i32.const 1))))))
	// sluice_decide: (call $f (i32.const 30)) (i64.const allow): 2³¹ calls.
	half := cat([]byte{0x20, 0x00}, i32Const(1), []byte{0x6B, 0x10, 0x03})
	g := rawGuest{
		memory: pages(1),
		decide: cat(i32Const(30), []byte{0x10, 0x03}, i64Const(allowResult)),
		funcs:  [][]byte{cat([]byte{0x20, 0x00, 0x04, 0x40}, half, half, []byte{0x0B})},
	}
	e, err := wasm.New(t.Context(), "recurse", g.bytes(), nil, wasm.WithPoolSize(1), wasm.WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	gc := make(chan time.Duration, 1)
	go func() {
		time.Sleep(10 * time.Millisecond) // the guest is running
		start := time.Now()
		runtime.GC()
		gc <- time.Since(start)
	}()
	start := time.Now()
	_, err = e.Decide(t.Context(), policy.ActionResolve, anyInput)
	elapsed := time.Since(start)
	if wasm.CodeOf(err) != wasm.CodeTimeout {
		t.Errorf("Decide = %v, want code timeout", err)
	}
	if elapsed > time.Second {
		t.Errorf("Decide under a 50ms deadline took %v", elapsed)
	}
	if d := <-gc; d > 500*time.Millisecond {
		t.Errorf("a GC beside the guest took %v", d)
	}
}

// TestEngine_BulkWorkHonoursDeadline checks that a guest looping over bulk
// memory and table instructions, or over a host call that does a lot of
// work, is stopped near its deadline (issue 15 item 4): every such
// instruction spends fuel by its length, and every host call is followed
// by an interrupt check.
func TestEngine_BulkWorkHonoursDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		guest rawGuest
	}{
		// (loop (memory.fill (i32.const 0) (i32.const 0) (i32.const 16 MiB)) (br 0))
		{"memory.fill", rawGuest{memory: pages(256),
			decide: forever(i32Const(0), i32Const(0), i32Const(bigMemory), fc(11, 0x00))}},
		// (loop (memory.copy (i32.const 0) (i32.const 8 MiB) (i32.const 8 MiB)) (br 0))
		{"memory.copy", rawGuest{memory: pages(256),
			decide: forever(i32Const(0), i32Const(bigMemory/2), i32Const(bigMemory/2), fc(10, 0x00, 0x00))}},
		// (loop (memory.init 1 (i32.const 0) (i32.const 0) (i32.const 60000)) (br 0))
		{"memory.init", rawGuest{memory: pages(2), passive: make([]byte, 60000),
			decide: forever(i32Const(0), i32Const(0), i32Const(60000), fc(8, 0x01, 0x00))}},
		// (table 1048576 1048576 funcref)
		// (loop (table.fill 0 (i32.const 0) (ref.null func) (i32.const 1048576)) (br 0))
		{"table.fill", rawGuest{memory: pages(1), tables: [][]byte{cat([]byte{0x70, 0x01}, uleb(1<<20), uleb(1<<20))},
			decide: forever(i32Const(0), []byte{0xD0, 0x70}, i32Const(1<<20), fc(17, 0x00))}},
		// (loop (drop (call $random_get (i32.const 0) (i32.const 16 MiB))) (br 0))
		{"random_get", rawGuest{memory: pages(256), randomGet: true,
			decide: forever(i32Const(0), i32Const(bigMemory), []byte{0x10, 0x00, 0x1A})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !isolate(t, childTimeout) {
				return
			}
			e, err := wasm.New(t.Context(), tt.name, tt.guest.bytes(), nil, wasm.WithPoolSize(1), wasm.WithTimeout(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for range 2 {
				start := time.Now()
				_, err := e.Decide(t.Context(), policy.ActionResolve, anyInput)
				if wasm.CodeOf(err) != wasm.CodeTimeout {
					t.Errorf("Decide = %v, want code timeout", err)
				}
				if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
					t.Errorf("Decide under a 50ms deadline took %v", elapsed)
				}
			}
		})
	}
}

// TestNew_TablesCountAgainstMemoryCap checks that tables cannot take
// memory past the cap (issue 15 item 3): a table's maximum (its minimum
// when it declares none) counts against the memory cap, and table.grow
// cannot pass it.
func TestNew_TablesCountAgainstMemoryCap(t *testing.T) {
	t.Parallel()
	table := func(limits ...[]byte) [][]byte { return [][]byte{cat([]byte{0x70}, cat(limits...))} }
	// sluice_decide: allow when the instruction before it left -1 (failed).
	allowIfFailed := cat(i32Const(-1), []byte{0x46, 0x04, 0x7E}, i64Const(allowResult), []byte{0x05}, i64Const(denyResult), []byte{0x0B})
	tests := []struct {
		name  string
		pages uint32
		guest rawGuest
		want  wasm.Code // "": loads, and its decision allows
	}{
		// (table 134217728 funcref): 1 GiB an instance.
		{"huge-minimum", 512, rawGuest{memory: pages(1), tables: table([]byte{0x00}, uleb(1<<27)), decide: i64Const(allowResult)}, wasm.CodeLimit},
		// (table 1 4294967295 funcref)
		{"huge-maximum", 512, rawGuest{memory: pages(1), tables: table([]byte{0x01, 0x01}, uleb(1<<32-1)), decide: i64Const(allowResult)}, wasm.CodeLimit},
		// (memory 10) (table 65536 funcref): 10 pages + 512 KiB of table over a cap of 16 pages.
		{"memory-plus-table", 16, rawGuest{memory: pages(10), tables: table([]byte{0x00}, uleb(1<<16)), decide: i64Const(allowResult)}, wasm.CodeLimit},
		// (table 1 funcref): table.grow by 10⁸ entries (800 MB) must fail.
		{"table.grow", 512, rawGuest{memory: pages(1), tables: table([]byte{0x00, 0x01}),
			decide: cat([]byte{0xD0, 0x70}, i32Const(100_000_000), fc(15, 0x00), allowIfFailed)}, ""},
		// (memory 1) (table 8192 funcref) under a cap of 16 pages: the
		// table takes one page, so memory.grow 15 must fail.
		{"memory.grow", 16, rawGuest{memory: pages(1), tables: table([]byte{0x00}, uleb(8192)),
			decide: cat(i32Const(15), []byte{0x40, 0x00}, allowIfFailed)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !isolate(t, childTimeout) {
				return
			}
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			e, err := wasm.New(t.Context(), tt.name, tt.guest.bytes(), nil, wasm.WithPoolSize(2), wasm.WithMemoryLimitPages(tt.pages))
			if tt.want != "" {
				if err == nil {
					_ = e.Close()
				}
				if got := wasm.CodeOf(err); got != tt.want {
					t.Fatalf("New = %v; want code %s", err, tt.want)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				d, err := e.Decide(context.WithoutCancel(t.Context()), policy.ActionResolve, anyInput)
				if err != nil || !d.Allow {
					t.Errorf("Decide = %+v, %v; want allow (the grow failed)", d, err)
				}
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapSys) - int64(before.HeapSys); grown > 64<<20 {
				t.Errorf("the Go heap grew by %d MiB", grown>>20)
			}
		})
	}
}
