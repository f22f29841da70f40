package instrument

import "encoding/binary"

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

// appendGlobals returns a global section body of n existing entries
// (raw) plus the appended globals: the interrupt, (mut i32) = 0, the fuel,
// (mut i32) = Fuel, and the scratch slot, (mut i32) = 0.
func appendGlobals(entries []byte, n uint32) []byte {
	out := binary.AppendUvarint(nil, uint64(n)+appendedGlobals)
	out = append(out, entries...)
	out = append(out, 0x7F, 0x01, opI32Const, 0x00, opEnd)
	out = append(out, 0x7F, 0x01, opI32Const)
	out = appendSLEB(out, Fuel)
	out = append(out, opEnd)
	return append(out, 0x7F, 0x01, opI32Const, 0x00, opEnd)
}

// appendExports returns the export section body: the module's exports
// plus the interrupt global and, when the module had a start function,
// StartExport.
func appendExports(m *module, interrupt uint32) []byte {
	n := uint64(len(m.exports)) + 1
	if m.hasStart {
		n++
	}
	out := binary.AppendUvarint(nil, n)
	for _, e := range m.exports {
		out = append(out, e...)
	}
	out = appendExport(out, InterruptExport, kindGlobal, interrupt)
	if m.hasStart {
		out = appendExport(out, StartExport, kindFunc, m.startFunc)
	}
	return out
}

func appendExport(dst []byte, name string, kind byte, index uint32) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = append(dst, kind)
	return binary.AppendUvarint(dst, uint64(index))
}

// appendTables returns a table section body with every table's maximum
// written out (a missing one is the minimum).
func appendTables(tables []tableType) []byte {
	out := binary.AppendUvarint(nil, uint64(len(tables)))
	for _, t := range tables {
		out = append(out, t.ref, 0x01)
		out = binary.AppendUvarint(out, uint64(t.min))
		out = binary.AppendUvarint(out, uint64(t.max))
	}
	return out
}
