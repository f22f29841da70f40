package instrument

import (
	"fmt"
	"unicode/utf8"
)

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
	b    []byte
	i    int
	base int // offset of b in the module, for errors
	err  error
}

// fail records a malformed-module error at the current offset.
func (r *reader) fail(format string, args ...any) { r.failKind(ErrMalformed, format, args...) }

// failKind records an error of a kind (ErrMalformed, ErrLimit,
// ErrUnsupported) and stops reading.
func (r *reader) failKind(kind error, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: offset %d: "+format, append([]any{kind, r.base + r.i}, args...)...)
	}
	r.i = len(r.b)
}

// left is the number of unread bytes.
func (r *reader) left() int { return len(r.b) - r.i }

// count reads the length of a vector whose entries take at least minBytes
// each, refusing one longer than the bytes left or than limit.
func (r *reader) count(what string, minBytes, limit int) uint32 {
	n := r.u32()
	switch {
	case r.err != nil:
	case uint64(n)*uint64(minBytes) > uint64(r.left()):
		r.fail("%s: %d entries in %d bytes", what, n, r.left())
	case uint64(n) > uint64(limit):
		r.failKind(ErrLimit, "%s: %d, more than the host allows (%d)", what, n, limit)
	}
	if r.err != nil {
		return 0
	}
	return n
}

// sub returns a reader of the next n bytes (a section or a body), whose
// errors name offsets in the whole module.
func (r *reader) sub(n int) reader {
	base := r.base + r.i
	return reader{b: r.bytes(n), base: base}
}

// name reads a length-prefixed UTF-8 string.
func (r *reader) name() string {
	b := r.bytes(int(r.u32()))
	if r.err == nil && !utf8.Valid(b) {
		r.fail("name is not valid UTF-8")
	}
	return string(b)
}

// end fails unless everything was read.
func (r *reader) end(what string) {
	if r.err == nil && r.i != len(r.b) {
		r.fail("%d trailing bytes in %s", len(r.b)-r.i, what)
	}
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

// peekU32 returns the u32 at the current offset without reading it (0
// when there is none).
func (r *reader) peekU32() uint32 {
	save, err := r.i, r.err
	v := r.u32()
	r.i, r.err = save, err
	return v
}

func (r *reader) u32() uint32 {
	v := r.leb(5)
	if v > 0xFFFFFFFF {
		r.fail("u32 out of range")
	}
	return uint32(v)
}

// limits reads the limits of a table or memory type (Wasm 2.0: no shared
// or 64-bit memories); max is -1 when absent.
func (r *reader) limits() (min uint32, max int64) {
	switch flags := r.byte(); {
	case r.err != nil:
		return 0, -1
	case flags > 0x01:
		r.failKind(ErrUnsupported, "limits flags %#x (shared or 64-bit memory)", flags)
		return 0, -1
	case flags == 0x01:
		min = r.u32()
		max = int64(r.u32())
		if r.err == nil && int64(min) > max {
			r.fail("limits minimum %d over maximum %d", min, max)
		}
		return min, max
	}
	return r.u32(), -1
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
		n := r.count("br_table labels", 1, 1<<30)
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10: // call
		r.u32()
	case op == 0x11: // call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		n := r.count("select types", 1, 1<<30)
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
		r.failKind(ErrUnsupported, "instruction %#x", op)
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
		r.failKind(ErrUnsupported, "instruction 0xfc %d", sub)
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
		r.failKind(ErrUnsupported, "instruction 0xfd %d", sub)
	}
}
