// Package instrument rewrites a Wasm module so that the host can stop it
// cheaply: every loop header spends one unit of "fuel"; when the fuel is
// out (every Fuel loop iterations) the guest refuels, steps out into Go
// once and traps (unreachable) if the host set the "interrupt" global.
//
// wazero's own mechanism (RuntimeConfig.WithCloseOnContextDone) compiles
// every loop header into a call out of native code into Go and back, and
// starts a goroutine per call. Go's Wasm code opens a loop in every
// function, so a decision paid hundreds of such exits (tens of
// microseconds). The check inserted here is a load, a subtraction, a store
// and a branch; the exit into Go happens once per Fuel iterations.
//
// The exit into Go is needed, not only the flag: native code cannot be
// preempted, so a guest spinning in native code would hold up the Go
// garbage collector's stop-the-world — and with it the very timer that
// would set the flag — forever. `memory.grow 0` is the exit: wazero
// implements it in Go, it changes nothing, and every sluice guest has a
// memory (a module with loops and no memory fails to compile).
//
// The rewrite:
//
//   - appends two mutable i32 globals (indices after all existing ones, so
//     no index of the module changes): the interrupt flag, exported as
//     InterruptExport, and the fuel counter;
//
//   - inserts the check after the opcode and block type of every `loop`:
//
//     global.get $fuel; i32.const 1; i32.sub; global.set $fuel
//     global.get $fuel; i32.eqz
//     if
//     i32.const Fuel; global.set $fuel
//     i32.const 0; memory.grow 0; drop
//     global.get $interrupt; if; unreachable; end
//     end
//
//   - turns a start section into the export StartExport, so that the host
//     can run the start function under the same watchdog as any call
//     (wazero would run it inside instantiation, where nothing can stop a
//     loop);
//
//   - drops DWARF custom sections (.debug_*), whose code offsets would be
//     stale; the name section stays.
//
// Modules whose code refers to a global index that does not exist (which
// the appended global would make valid), that already export one of the
// reserved names, or that use instructions outside WebAssembly 2.0 (what
// wazero accepts by default) are refused. The input is untrusted: no
// panics, every length is checked.
package instrument

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Reserved export names added by Module.
const (
	InterruptExport = "sluice.interrupt"
	StartExport     = "sluice.start"
)

// Fuel is the number of loop iterations between two exits into Go, which
// bounds how long an interrupt waits: a few microseconds of a tight loop.
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
}

const (
	secCustom    = 0
	secImport    = 2
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secCode      = 10
	kindFunc     = 0x00
	kindTable    = 0x01
	kindMemory   = 0x02
	kindGlobal   = 0x03
	kindTag      = 0x04
	opLoop       = 0x03
	opGlobalGet  = 0x23
	opGlobalSet  = 0x24
	opI32Const   = 0x41
	blockTypeNil = 0x40
)

type section struct {
	id   byte
	body []byte
}

// Module instruments a binary module (see the package comment).
func Module(module []byte) (Result, error) {
	r, err := instrument(module)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

func instrument(module []byte) (Result, error) {
	header := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	if !bytes.HasPrefix(module, header) {
		return Result{}, errors.New("not a Wasm 1.0 binary module")
	}
	var sections []section
	rd := reader{b: module, i: len(header)}
	for rd.i < len(rd.b) {
		id := rd.byte()
		body := rd.bytes(int(rd.u32()))
		if rd.err != nil {
			return Result{}, rd.err
		}
		sections = append(sections, section{id, body})
	}

	var importedGlobals, definedGlobals uint32
	var startFunc uint32
	hasStart := false
	for _, s := range sections {
		var err error
		switch s.id {
		case secImport:
			importedGlobals, err = countImportedGlobals(s.body)
		case secGlobal:
			r := reader{b: s.body}
			definedGlobals = r.u32()
			err = r.err
		case secStart:
			r := reader{b: s.body}
			startFunc, hasStart = r.u32(), true
			err = r.err
		case secExport:
			err = checkExports(s.body)
		}
		if err != nil {
			return Result{}, err
		}
	}
	interrupt := importedGlobals + definedGlobals
	if interrupt < importedGlobals || interrupt+1 < interrupt {
		return Result{}, errors.New("too many globals")
	}

	out := append([]byte(nil), header...)
	wroteGlobal, wroteExport := false, false
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	// Sections that may be missing are written before the first section
	// that must follow them (custom sections aside).
	flushBefore := func(id byte) {
		if !wroteGlobal && order(id) > order(secGlobal) {
			emit(secGlobal, appendGlobal(nil, 0))
			wroteGlobal = true
		}
		if !wroteExport && order(id) > order(secExport) {
			emit(secExport, appendExports(nil, 0, interrupt, hasStart, startFunc))
			wroteExport = true
		}
	}
	for _, s := range sections {
		switch s.id {
		case secCustom:
			if isDebugSection(s.body) {
				continue
			}
			emit(s.id, s.body)
		case secGlobal:
			flushBefore(s.id)
			body, err := addGlobal(s.body)
			if err != nil {
				return Result{}, err
			}
			emit(s.id, body)
			wroteGlobal = true
		case secExport:
			flushBefore(s.id)
			body, err := addExports(s.body, interrupt, hasStart, startFunc)
			if err != nil {
				return Result{}, err
			}
			emit(s.id, body)
			wroteExport = true
		case secStart:
			flushBefore(s.id) // dropped: exported as StartExport instead
		case secCode:
			flushBefore(s.id)
			body, err := rewriteCode(s.body, interrupt)
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
	return Result{Module: out, HasStart: hasStart}, nil
}

// rewriteCode instruments every function body of a code section.
func rewriteCode(body []byte, interrupt uint32) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := binary.AppendUvarint(make([]byte, 0, len(body)+len(body)/8), uint64(n))
	check := loopCheck(interrupt)
	var fn []byte
	for i := range n {
		code := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil, r.err
		}
		var err error
		if fn, err = rewriteFunc(fn[:0], code, interrupt, check); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if r.err == nil && r.i != len(r.b) {
		r.fail("trailing bytes in code section")
	}
	return out, r.err
}

// loopCheck is the code inserted at every loop header (package comment).
func loopCheck(interrupt uint32) []byte {
	fuel := interrupt + 1
	global := func(dst []byte, op byte, idx uint32) []byte {
		return binary.AppendUvarint(append(dst, op), uint64(idx))
	}
	var c []byte
	c = global(c, opGlobalGet, fuel)
	c = append(c, opI32Const, 1, 0x6B) // i32.sub
	c = global(c, opGlobalSet, fuel)
	c = global(c, opGlobalGet, fuel)
	c = append(c, 0x45, 0x04, blockTypeNil) // i32.eqz; if
	c = appendSLEB(append(c, opI32Const), Fuel)
	c = global(c, opGlobalSet, fuel)
	c = append(c, opI32Const, 0, 0x40, 0x00, 0x1A) // memory.grow 0; drop
	c = global(c, opGlobalGet, interrupt)
	c = append(c, 0x04, blockTypeNil, 0x00, 0x0B) // if; unreachable; end
	return append(c, 0x0B)                        // end
}

func rewriteFunc(dst, code []byte, interrupt uint32, check []byte) ([]byte, error) {
	r := reader{b: code}
	groups := r.u32()
	for range groups {
		r.u32()  // count
		r.byte() // valtype
	}
	if r.err != nil {
		return nil, r.err
	}
	dst = append(dst, code[:r.i]...)
	for r.i < len(r.b) {
		start := r.i
		op := r.byte()
		switch {
		case op == opLoop:
			r.blockType()
			dst = append(dst, code[start:r.i]...)
			dst = append(dst, check...)
			continue
		case op == opGlobalGet || op == opGlobalSet:
			if idx := r.u32(); r.err == nil && idx >= interrupt {
				return nil, fmt.Errorf("global index %d out of range", idx)
			}
		default:
			r.immediates(op)
		}
		if r.err != nil {
			return nil, r.err
		}
		dst = append(dst, code[start:r.i]...)
	}
	return dst, r.err
}
