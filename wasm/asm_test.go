package wasm_test

// A tiny assembler for the hostile modules of the sandbox tests: each is
// written out by hand (WAT in the comment beside it) and documented in
// testdata/README.md.

import "slices"

func uleb(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// vec is a Wasm vector: the count, then the entries.
func vec(entries ...[]byte) []byte { return cat(uleb(uint64(len(entries))), cat(entries...)) }

func str(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

func section(id byte, body []byte) []byte { return cat([]byte{id}, uleb(uint64(len(body))), body) }

func wasmModule(sections ...[]byte) []byte {
	return cat([]byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}, cat(sections...))
}

// Results of the decide bodies of rawGuest: ptr<<32 | len of a decision
// in the data segment at address 0.
const (
	allowResult = 14          // {"allow":true} at 0
	denyResult  = 16<<32 | 15 // {"allow":false} at 16
	bigMemory   = 16 << 20    // 16 MiB: what a bulk instruction of the tests moves
	decisions   = `{"allow":true}` + "\x00\x00" + `{"allow":false}`
)

// Function types of rawGuest.
const (
	typeVersion   = 0 // () -> i32
	typeAlloc     = 1 // (i32) -> i32
	typeDecide    = 2 // (i32 i32 i32 i32) -> i64
	typeRecurse   = 3 // (i32) -> ()
	typeRandomGet = 4 // (i32 i32) -> i32
	typeFdWrite   = 5 // (i32 i32 i32 i32) -> i32
	typeClockGet  = 6 // (i32 i64 i32) -> i32
)

// rawGuest is an ABI v1 module assembled by hand:
//
//	(module
//	  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))  ;; when randomGet
//	  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))  ;; when fdWrite
//	  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))  ;; when clockGet
//	  (table …)                                   ;; tables
//	  (memory …)                                  ;; memory (limits bytes)
//	  (func $sluice_abi_version (result i32) (i32.const 1))
//	  (func $sluice_alloc (param i32) (result i32) (i32.const 1024))
//	  (func $sluice_decide (param i32 i32 i32 i32) (result i64) …decide…)
//	  (func …)                                    ;; funcs, of type typeRecurse
//	  (export "memory" (memory 0)) (export "sluice_abi_version" …) …
//	  (elem (i32.const 0) …elems…)                ;; when elems
//	  (data (i32.const 0) "{\"allow\":true}\00\00{\"allow\":false}")
//	  (data …))                                   ;; passive
type rawGuest struct {
	randomGet bool
	fdWrite   bool     // import wasi fd_write (after random_get)
	clockGet  bool     // import wasi clock_time_get (after fd_write)
	elems     []uint64 // an active element segment at table 0, offset 0
	tables    [][]byte // table types: reftype, limits
	memory    []byte   // memory limits
	decide    []byte   // instructions of sluice_decide, without locals and the final end
	funcs     [][]byte // instructions of further functions (type typeRecurse)
	passive   []byte   // a passive data segment, when not nil
}

func (g rawGuest) bytes() []byte {
	i32, i64 := byte(0x7F), byte(0x7E)
	fn := func(params, results []byte) []byte {
		return cat([]byte{0x60}, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
	}
	var imports [][]byte
	if g.randomGet {
		imports = append(imports, cat(str("wasi_snapshot_preview1"), str("random_get"), []byte{0x00}, uleb(typeRandomGet)))
	}
	if g.fdWrite {
		imports = append(imports, cat(str("wasi_snapshot_preview1"), str("fd_write"), []byte{0x00}, uleb(typeFdWrite)))
	}
	if g.clockGet {
		imports = append(imports, cat(str("wasi_snapshot_preview1"), str("clock_time_get"), []byte{0x00}, uleb(typeClockGet)))
	}
	base := uint64(len(imports))
	funcTypes := [][]byte{uleb(typeVersion), uleb(typeAlloc), uleb(typeDecide)}
	body := func(code []byte) []byte {
		b := cat([]byte{0x00}, code, []byte{0x0B})
		return cat(uleb(uint64(len(b))), b)
	}
	bodies := [][]byte{body(cat([]byte{0x41}, sleb(1))), body(cat([]byte{0x41}, sleb(1024))), body(g.decide)}
	for _, f := range g.funcs {
		funcTypes = append(funcTypes, uleb(typeRecurse))
		bodies = append(bodies, body(f))
	}
	export := func(name string, kind byte, idx uint64) []byte { return cat(str(name), []byte{kind}, uleb(idx)) }
	data := [][]byte{cat([]byte{0x00, 0x41, 0x00, 0x0B}, str(decisions))}
	if g.passive != nil {
		data = append(data, cat([]byte{0x01}, uleb(uint64(len(g.passive))), g.passive))
	}
	sections := [][]byte{
		section(1, vec(fn(nil, []byte{i32}), fn([]byte{i32}, []byte{i32}), fn([]byte{i32, i32, i32, i32}, []byte{i64}),
			fn([]byte{i32}, nil), fn([]byte{i32, i32}, []byte{i32}), fn([]byte{i32, i32, i32, i32}, []byte{i32}), fn([]byte{i32, i64, i32}, []byte{i32}))),
	}
	if len(imports) > 0 {
		sections = append(sections, section(2, vec(imports...)))
	}
	sections = append(sections, section(3, vec(funcTypes...)))
	if len(g.tables) > 0 {
		sections = append(sections, section(4, vec(g.tables...)))
	}
	sections = append(sections,
		section(5, vec(g.memory)),
		section(7, vec(export("memory", 0x02, 0), export("sluice_abi_version", 0x00, base),
			export("sluice_alloc", 0x00, base+1), export("sluice_decide", 0x00, base+2))),
	)
	if len(g.elems) > 0 {
		idx := make([][]byte, len(g.elems))
		for i, f := range g.elems {
			idx[i] = uleb(f)
		}
		sections = append(sections, section(9, vec(cat([]byte{0x00}, i32Const(0), []byte{0x0B}, vec(idx...)))))
	}
	if g.passive != nil {
		sections = append(sections, section(12, uleb(uint64(len(data)))))
	}
	sections = append(sections, section(10, vec(bodies...)), section(11, vec(data...)))
	return wasmModule(sections...)
}

// Instruction helpers.
func i32Const(v int64) []byte           { return cat([]byte{0x41}, sleb(v)) }
func i64Const(v int64) []byte           { return cat([]byte{0x42}, sleb(v)) }
func fc(sub uint64, imm ...byte) []byte { return cat([]byte{0xFC}, uleb(sub), imm) }

// forever wraps body in `loop … br 0 end` and returns allowResult after
// it (never reached).
func forever(body ...[]byte) []byte {
	return cat([]byte{0x03, 0x40}, cat(body...), []byte{0x0C, 0x00, 0x0B}, i64Const(allowResult))
}

// pages is memory limits of min pages and no maximum.
func pages(min uint64) []byte { return cat([]byte{0x00}, uleb(min)) }
