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
	"strings"
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

// order is the position a known section must take (WebAssembly 2.0 plus
// the tag section of exception handling, between memory and global).
func order(id byte) int {
	switch id {
	case 13: // tag
		return 55
	case 12: // data count, between element and code
		return 95
	case 10: // code
		return 100
	case 11: // data
		return 110
	case 0xFF:
		return 1000
	}
	return int(id) * 10
}

func isDebugSection(body []byte) bool {
	r := reader{b: body}
	name := r.bytes(int(r.u32()))
	return r.err == nil && strings.HasPrefix(string(name), ".debug_")
}

func countImportedGlobals(body []byte) (uint32, error) {
	r := reader{b: body}
	n := r.u32()
	var globals uint32
	for range n {
		r.bytes(int(r.u32())) // module
		r.bytes(int(r.u32())) // name
		switch kind := r.byte(); kind {
		case kindFunc:
			r.u32()
		case kindTable:
			r.byte() // reftype
			r.limits()
		case kindMemory:
			r.limits()
		case kindGlobal:
			r.byte() // valtype
			r.byte() // mutability
			globals++
		case kindTag:
			r.byte()
			r.u32()
		default:
			r.fail("unknown import kind %#x", kind)
		}
		if r.err != nil {
			return 0, r.err
		}
	}
	return globals, r.err
}

func checkExports(body []byte) error {
	r := reader{b: body}
	n := r.u32()
	for range n {
		name := string(r.bytes(int(r.u32())))
		r.byte()
		r.u32()
		if r.err != nil {
			return r.err
		}
		if name == InterruptExport || name == StartExport {
			return fmt.Errorf("module exports the reserved name %q", name)
		}
	}
	return r.err
}

// appendGlobal returns a global section body of n existing entries (raw)
// plus the interrupt global, (mut i32) = 0, and the fuel, (mut i32) = Fuel.
func appendGlobal(entries []byte, n uint32) []byte {
	out := binary.AppendUvarint(nil, uint64(n)+2)
	out = append(out, entries...)
	out = append(out, 0x7F, 0x01, opI32Const, 0x00, 0x0B)
	out = append(out, 0x7F, 0x01, opI32Const)
	out = appendSLEB(out, Fuel)
	return append(out, 0x0B)
}

func addGlobal(body []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	return appendGlobal(body[r.i:], n), nil
}

func appendExports(entries []byte, n, interrupt uint32, hasStart bool, start uint32) []byte {
	extra := uint64(1)
	if hasStart {
		extra++
	}
	out := binary.AppendUvarint(nil, uint64(n)+extra)
	out = append(out, entries...)
	out = appendExport(out, InterruptExport, kindGlobal, interrupt)
	if hasStart {
		out = appendExport(out, StartExport, kindFunc, start)
	}
	return out
}

func appendExport(dst []byte, name string, kind byte, index uint32) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = append(dst, kind)
	return binary.AppendUvarint(dst, uint64(index))
}

func addExports(body []byte, interrupt uint32, hasStart bool, start uint32) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	return appendExports(body[r.i:], n, interrupt, hasStart, start), nil
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

// appendSLEB appends v in signed LEB128 (the encoding of i32.const).
func appendSLEB(dst []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("offset %d: "+format, append([]any{r.i}, args...)...)
	}
	r.i = len(r.b)
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.i {
		r.fail("length %d past the end", n)
		return nil
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b
}

// leb skips a LEB128 number of at most maxBytes bytes, returning its low
// 64 bits (unsigned interpretation).
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for n := 0; n < maxBytes; n++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if n < 10 {
			v |= uint64(c&0x7F) << (7 * n)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("LEB128 number too long")
	return 0
}

func (r *reader) u32() uint32 {
	v := r.leb(5)
	if v > 0xFFFFFFFF {
		r.fail("u32 out of range")
	}
	return uint32(v)
}

func (r *reader) limits() {
	flags := r.byte()
	if flags > 0x07 {
		r.fail("bad limits flags %#x", flags)
		return
	}
	r.leb(10)
	if flags&0x01 != 0 {
		r.leb(10)
	}
}

func isValType(c byte) bool {
	switch c {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return true
	}
	return false
}

func (r *reader) blockType() {
	if r.i < len(r.b) && (r.b[r.i] == blockTypeNil || isValType(r.b[r.i])) {
		r.i++
		return
	}
	r.leb(5) // s33 type index
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10) // offset (u64 with memory64)
}

// immediates skips the immediates of op (already read). Opcodes outside
// WebAssembly 2.0 fail.
func (r *reader) immediates(op byte) {
	switch {
	case op == 0x00, op == 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B, op == 0xD1:
		// unreachable, nop, else, end, return, drop, select, ref.is_null
	case op == 0x02, op == 0x04: // block, if
		r.blockType()
	case op == 0x0C, op == 0x0D: // br, br_if
		r.u32()
	case op == 0x0E: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10: // call
		r.u32()
	case op == 0x11: // call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		n := r.u32()
		r.bytes(int(n))
	case op >= 0x20 && op <= 0x22, op == 0x25, op == 0x26: // locals, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3E: // loads and stores
		r.memarg()
	case op == 0x3F, op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.leb(5)
	case op == 0x42:
		r.leb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op >= 0x45 && op <= 0xC4: // numeric and sign extension
	case op == 0xD0: // ref.null
		if t := r.byte(); t != 0x70 && t != 0x6F {
			r.fail("bad heap type %#x", t)
		}
	case op == 0xD2: // ref.func
		r.u32()
	case op == 0xFC:
		r.prefixFC()
	case op == 0xFD:
		r.prefixFD()
	default:
		r.fail("unsupported instruction %#x", op)
	}
}

func (r *reader) prefixFC() {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		r.u32()
	default:
		r.fail("unsupported instruction 0xfc %d", sub)
	}
}

func (r *reader) prefixFD() {
	switch sub := r.u32(); {
	case sub <= 11, sub == 92, sub == 93: // loads, store
		r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	case sub <= 255:
	default:
		r.fail("unsupported instruction 0xfd %d", sub)
	}
}
