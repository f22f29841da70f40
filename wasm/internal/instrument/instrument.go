// Package instrument checks and rewrites an untrusted Wasm module so that
// the host can run it safely and stop it cheaply.
//
// First a bounded pre-parse (parse.go, limits.go) walks every section and
// refuses a module whose declared counts, section sizes, locals, tables,
// memories or segments exceed what its bytes or the host's limits allow:
// wazero allocates what a module declares before reading it, and an
// allocation the Go runtime cannot satisfy is a fatal error that kills the
// process. Bytes the pre-parse refused are never handed to wazero.
//
// Then the rewrite makes every unit of guest work spend "fuel": every
// function entry and loop header spends one unit; every bulk instruction
// (memory.fill/copy/init, table.fill/copy/init/grow) spends one plus one
// per 256 bytes (memory) or 32 entries (tables) before it runs. When the
// fuel is out (every Fuel units) the guest refuels, steps out into Go once
// and traps (unreachable) if the host set the "interrupt" global. After
// every call of an imported (host) function, and after every
// call_indirect (whose callee may be one), the guest checks the interrupt
// too, so a host call that ran into the deadline ends the call.
//
// wazero's own mechanism (RuntimeConfig.WithCloseOnContextDone) compiles
// every loop header into a call out of native code into Go and back, and
// starts a goroutine per call. Go's Wasm code opens a loop in every
// function, so a decision paid hundreds of such exits (tens of
// microseconds). The check inserted here is a load, a subtraction, a store
// and a branch; the exit into Go happens once per Fuel units.
//
// The exit into Go is needed, not only the flag: native code cannot be
// preempted, so a guest spinning in native code would hold up the Go
// garbage collector's stop-the-world — and with it the very timer that
// would set the flag — forever. `memory.grow 0` is the exit: wazero
// implements it in Go and it changes nothing. Every module with code must
// therefore have a memory (sluice guests export theirs).
//
// The rewrite:
//
//   - appends three mutable i32 globals (indices after all existing ones,
//     so no index of the module changes): the interrupt flag, exported as
//     InterruptExport, the fuel counter, and a scratch slot that holds the
//     length operand of a bulk instruction while its fuel is charged;
//
//   - inserts after the locals of every function body, and after the
//     opcode and block type of every `loop`:
//
//     global.get $fuel; i32.const 1; i32.sub; global.set $fuel
//     global.get $fuel; i32.eqz
//     if
//     i32.const Fuel; global.set $fuel
//     i32.const 0; memory.grow 0; drop
//     global.get $interrupt; if; unreachable; end
//     end
//
//   - before every bulk instruction: the charge above with the length
//     (`global.set $scratch; global.get $fuel; global.get $scratch;
//     i32.const shift; i32.shr_u; i32.sub; i32.const 1; i32.sub; global.set
//     $fuel`, refuelling when the fuel is below 1, then `global.get
//     $scratch`); after every `call` of an imported function and every
//     `call_indirect` (when the module imports functions):
//     `global.get $interrupt; if; unreachable; end`;
//
//   - turns a start section into the export StartExport, so that the host
//     can run the start function under the same watchdog as any call
//     (wazero would run it inside instantiation, where nothing can stop a
//     loop);
//
//   - drops DWARF custom sections (.debug_*), whose code offsets would be
//     stale; the name section stays (the pre-parse checks it as wazero
//     reads it).
//
// Modules whose code refers to a global index that does not exist (which
// an appended global would make valid), that already export one of the
// reserved names, or that use instructions outside WebAssembly 2.0 (what
// wazero accepts by default) are refused. The input is untrusted: no
// panics, every length is checked.
package instrument

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Reserved export names added by Module.
const (
	InterruptExport = "sluice.interrupt"
	StartExport     = "sluice.start"
)

// Fuel is the number of units (function calls, loop iterations, 256-byte
// blocks of bulk work) between two exits into Go, which bounds how long an
// interrupt waits: a few microseconds of guest work.
const Fuel = 4096

// ErrInvalid is wrapped by every error of Module.
var ErrInvalid = errors.New("cannot instrument module")

// Result is an instrumented module.
type Result struct {
	Module []byte
	// HasStart reports that the module had a start function, now exported
	// as StartExport: the host must call it once after instantiation,
	// before anything else.
	HasStart bool
	// TableBytes is what the module's tables may cost on the host at their
	// maxima: the host takes it off the linear memory cap.
	TableBytes uint64
	// DefinedMemory reports that the module imported its memory and, as
	// Limits.DefineImportedMemory asked, now defines it.
	DefinedMemory bool
}

const (
	kindFunc       = 0x00
	kindTable      = 0x01
	kindMemory     = 0x02
	kindGlobal     = 0x03
	opUnreachable  = 0x00
	opLoop         = 0x03
	opIf           = 0x04
	opEnd          = 0x0B
	opCall         = 0x10
	opCallIndirect = 0x11
	opDrop         = 0x1A
	opGlobalGet    = 0x23
	opGlobalSet    = 0x24
	opMemoryGrow   = 0x40
	opI32Const     = 0x41
	opI32Eqz       = 0x45
	opI32LtS       = 0x48
	opI32Sub       = 0x6B
	opI32ShrU      = 0x76
	blockTypeNil   = 0x40

	appendedGlobals = 3 // interrupt, fuel, scratch
)

// Module checks and instruments a binary module (see the package
// comment) under lim. Its errors wrap ErrInvalid and one of ErrMalformed,
// ErrLimit, ErrUnsupported.
func Module(module []byte, lim Limits) (Result, error) {
	r, err := instrument(module, lim)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

func instrument(b []byte, lim Limits) (Result, error) {
	m, err := parse(b, lim)
	if err != nil {
		return Result{}, err
	}
	interrupt := m.interrupt()
	out := append(make([]byte, 0, len(b)+len(b)/4), header...)
	wroteGlobal, wroteExport := false, false
	defineMemory := lim.DefineImportedMemory && m.memLimits != nil
	definedMemory := defineMemory
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	// Sections that may be missing are written before the first section
	// that must follow them (custom sections aside).
	flushBefore := func(id byte) {
		if defineMemory && order(id) > order(secMemory) {
			emit(secMemory, append([]byte{1}, m.memLimits...))
			defineMemory = false
		}
		if !wroteGlobal && order(id) > order(secGlobal) {
			emit(secGlobal, appendGlobals(nil, 0))
			wroteGlobal = true
		}
		if !wroteExport && order(id) > order(secExport) {
			emit(secExport, appendExports(m, interrupt))
			wroteExport = true
		}
	}
	for _, s := range m.sections {
		switch s.id {
		case secCustom:
			emit(s.id, s.body)
		case secImport:
			if defineMemory {
				emit(s.id, dropImport(s.body, m.memImport))
				continue
			}
			emit(s.id, s.body)
		case secGlobal:
			flushBefore(s.id)
			r := reader{b: s.body}
			n := r.u32()
			emit(s.id, appendGlobals(s.body[r.i:], n))
			wroteGlobal = true
		case secTable:
			flushBefore(s.id)
			emit(s.id, appendTables(m.tables))
		case secExport:
			flushBefore(s.id)
			emit(s.id, appendExports(m, interrupt))
			wroteExport = true
		case secStart:
			flushBefore(s.id) // dropped: exported as StartExport instead
		case secCode:
			flushBefore(s.id)
			body, err := rewriteCode(s.body, s.base, m)
			if err != nil {
				return Result{}, err
			}
			emit(s.id, body)
		default:
			flushBefore(s.id)
			emit(s.id, s.body)
		}
	}
	flushBefore(0xFF)
	if m.definedFuncs > 0 && !hasSection(m, secCode) {
		return Result{}, fmt.Errorf("%w: %d functions without a code section", ErrMalformed, m.definedFuncs)
	}
	return Result{Module: out, HasStart: m.hasStart, TableBytes: m.tableEntries * TableEntryBytes, DefinedMemory: definedMemory}, nil
}

// dropImport returns the import section body without the entry at
// [entry[0], entry[1]), and with the count one less.
func dropImport(body []byte, entry [2]int) []byte {
	r := reader{b: body}
	n := r.u32()
	out := binary.AppendUvarint(make([]byte, 0, len(body)), uint64(n-1))
	out = append(out, body[r.i:entry[0]]...)
	return append(out, body[entry[1]:]...)
}

func hasSection(m *module, id byte) bool {
	for _, s := range m.sections {
		if s.id == id {
			return true
		}
	}
	return false
}
