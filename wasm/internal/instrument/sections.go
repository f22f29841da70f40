package instrument

import (
	"encoding/binary"
	"fmt"
	"strings"
)

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
