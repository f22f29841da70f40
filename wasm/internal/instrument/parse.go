package instrument

import (
	"bytes"
	"strings"
)

// Section ids of Wasm 2.0.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

var header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type section struct {
	id   byte
	body []byte
	base int // offset of body in the module
}

// module is what the pre-parse learned of a module.
type module struct {
	sections []section

	importedFuncs   uint32
	importedGlobals uint32
	definedFuncs    uint32
	definedGlobals  uint32
	memories        uint32
	memoryMinPages  uint64
	tables          []tableType
	tableEntries    uint64 // sum of the tables' maxima
	elementEntries  uint64
	dataSegments    uint32
	totalLocals     uint64
	compileCost     uint64 // sum over functions of (control instructions)²
	maxBlocks       uint64 // control instructions of the largest function
	names           uint64
	hasStart        bool
	startFunc       uint32
	exports         [][]byte // export section entries, raw, for rewriting

	// memImport is the import entry of an imported memory, [from, to)
	// in the import section body, and memLimits its limits, raw:
	// Limits.DefineImportedMemory turns it into a memory the module
	// defines.
	memImport [2]int
	memLimits []byte
}

// interrupt is the index of the first appended global.
func (m *module) interrupt() uint32 { return m.importedGlobals + m.definedGlobals }

// parse is the bounded pre-parse: it walks every section wazero decodes,
// checking every count against the bytes left and the host's limits, so
// that wazero never sees a module that would make it allocate more than a
// small multiple of the module's size. Code bodies are walked by the
// rewrite (code.go), which applies the same rules.
func parse(b []byte, lim Limits) (*module, error) {
	r := reader{b: b}
	if !bytes.HasPrefix(b, header) {
		r.fail("not a Wasm 1.0 binary module (invalid magic number or version)")
		return nil, r.err
	}
	if len(b) > MaxModuleBytes {
		r.failKind(ErrLimit, "module of %d bytes; the host takes at most %d", len(b), MaxModuleBytes)
		return nil, r.err
	}
	r.i = len(header)
	m := &module{}
	last := 0
	for r.i < len(r.b) && r.err == nil {
		id := r.byte()
		s := section{id: id}
		sr := r.sub(int(r.u32()))
		s.body, s.base = sr.b, sr.base
		if r.err != nil {
			break
		}
		if id != secCustom {
			o := order(id)
			if id > secTag {
				r.fail("unknown section id %d", id)
				break
			}
			if o <= last {
				r.fail("section %d out of order or repeated", id)
				break
			}
			last = o
		}
		keep := m.parseSection(&sr, id, lim)
		if sr.err != nil {
			return nil, sr.err
		}
		if keep {
			m.sections = append(m.sections, s)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, m.check(lim)
}

// TablePages is the number of memory pages that tableBytes of tables take
// off the memory cap.
func TablePages(tableBytes uint64) uint64 {
	return (tableBytes + PageBytes - 1) / PageBytes
}

// check applies the module-wide limits.
func (m *module) check(lim Limits) error {
	r := reader{}
	switch {
	case uint64(m.importedFuncs)+uint64(m.definedFuncs) > MaxFunctions:
		r.failKind(ErrLimit, "%d functions; the host allows %d", m.importedFuncs+m.definedFuncs, MaxFunctions)
	case uint64(m.importedGlobals)+uint64(m.definedGlobals)+appendedGlobals > MaxGlobals:
		r.failKind(ErrLimit, "%d globals; the host allows %d", m.importedGlobals+m.definedGlobals, MaxGlobals-appendedGlobals)
	case len(m.tables) > MaxTables:
		r.failKind(ErrLimit, "%d tables; the host allows %d", len(m.tables), MaxTables)
	case m.tableEntries > MaxTableEntries:
		r.failKind(ErrLimit, "tables of %d entries at most (a table without a maximum is held at its minimum); the host allows %d", m.tableEntries, MaxTableEntries)
	case m.memories > MaxMemories:
		r.failKind(ErrLimit, "%d memories; the host allows %d", m.memories, MaxMemories)
	case m.memories == 0 && m.definedFuncs > 0:
		r.failKind(ErrUnsupported, "module has code but no memory (sluice guests own and export their memory)")
	case lim.MemoryBytes > 0 && (m.memoryMinPages+TablePages(m.tableEntries*TableEntryBytes))*PageBytes > lim.MemoryBytes:
		r.failKind(ErrLimit, "memory of %d pages (%d bytes) and tables of %d entries (%d bytes) exceed the memory cap of %d bytes",
			m.memoryMinPages, m.memoryMinPages*PageBytes, m.tableEntries, m.tableEntries*TableEntryBytes, lim.MemoryBytes)
	}
	return r.err
}

// parseSection checks one section body and records what the rewrite
// needs; it returns false for sections to drop.
func (m *module) parseSection(r *reader, id byte, lim Limits) bool {
	switch id {
	case secCustom:
		name := r.name()
		switch {
		case r.err != nil:
		case strings.HasPrefix(name, ".debug_"):
			return false // code offsets would be stale
		case name == "name":
			// wazero decodes the name section and trusts its counts.
			m.names += checkNames(r)
			if r.err == nil && m.names > MaxNames {
				r.failKind(ErrLimit, "%d names; the host allows %d", m.names, MaxNames)
			}
		default:
			r.i = len(r.b)
		}
	case secType:
		n := r.count("types", 3, MaxTypes)
		for range n {
			if form := r.byte(); r.err == nil && form != 0x60 {
				r.failKind(ErrUnsupported, "type form %#x (only function types)", form)
			}
			for range 2 { // params, results
				k := r.count("parameters or results", 1, MaxParams)
				for range k {
					r.valType()
				}
			}
		}
	case secImport:
		n := r.count("imports", 4, MaxImports)
		for range n {
			start := r.i
			r.name()
			r.name()
			switch kind := r.byte(); kind {
			case kindFunc:
				r.u32()
				m.importedFuncs++
			case kindTable:
				r.failKind(ErrUnsupported, "table import (the host provides no tables)")
			case kindMemory:
				at := r.i
				m.memory(r)
				m.memImport, m.memLimits = [2]int{start, r.i}, r.b[at:r.i]
			case kindGlobal:
				r.valType()
				r.mutability()
				m.importedGlobals++
			default:
				if r.err == nil {
					r.failKind(ErrUnsupported, "import kind %#x", kind)
				}
			}
		}
	case secFunction:
		m.definedFuncs = r.count("functions", 1, MaxFunctions)
		for range m.definedFuncs {
			r.u32()
		}
	case secTable:
		n := r.count("tables", 3, MaxTables)
		for range n {
			m.table(r)
		}
	case secMemory:
		n := r.count("memories", 2, MaxMemories)
		for range n {
			m.memory(r)
		}
	case secGlobal:
		m.definedGlobals = r.count("globals", 4, MaxGlobals)
		for range m.definedGlobals {
			r.valType()
			r.mutability()
			m.constExpr(r)
		}
	case secExport:
		n := r.count("exports", 3, MaxExports)
		for range n {
			start := r.i
			name := r.name()
			kind := r.byte()
			idx := r.u32()
			if r.err != nil {
				break
			}
			switch {
			case name == InterruptExport || name == StartExport:
				r.failKind(ErrUnsupported, "module exports the reserved name %q", name)
			case kind > kindGlobal:
				r.failKind(ErrUnsupported, "export kind %#x", kind)
			case kind == kindGlobal && idx >= m.interrupt():
				r.fail("export of global %d, which does not exist", idx)
			}
			m.exports = append(m.exports, r.b[start:r.i])
		}
	case secStart:
		m.startFunc, m.hasStart = r.u32(), true
	case secElement:
		n := r.count("element segments", 3, MaxElementSegments)
		for range n {
			m.element(r)
		}
	case secCode:
		// Walked by the rewrite; only the count is checked here.
		r.count("function bodies", 3, MaxFunctions)
		r.i = len(r.b)
	case secData:
		m.dataSegments = r.count("data segments", 2, MaxDataSegments)
		for range m.dataSegments {
			switch flags := r.u32(); flags {
			case 0:
				m.constExpr(r)
			case 1:
			case 2:
				r.u32()
				m.constExpr(r)
			default:
				r.fail("data segment flags %d", flags)
			}
			r.bytes(int(r.u32()))
		}
	case secDataCount:
		if n := r.u32(); r.err == nil && n > MaxDataSegments {
			r.failKind(ErrLimit, "data count %d; the host allows %d", n, MaxDataSegments)
		}
	case secTag:
		r.failKind(ErrUnsupported, "tag section (exception handling)")
	}
	r.end("section")
	return true
}

// table reads a table type of the table section. A table without a
// maximum gets its minimum as maximum (the rewrite writes it out): Go
// guests declare their function table so and never grow it, and a
// table.grow past the maximum fails (returns -1) as the spec allows when
// resources run out. Every table's maximum then counts against the
// limits, so neither a declared minimum nor table.grow can take more than
// the cap.
func (m *module) table(r *reader) {
	ref := r.byte()
	if r.err == nil && ref != 0x70 && ref != 0x6F {
		r.failKind(ErrUnsupported, "reference type %#x", ref)
	}
	min, max := r.limits()
	if r.err != nil {
		return
	}
	if max < 0 {
		max = int64(min)
	}
	m.tables = append(m.tables, tableType{ref: ref, min: min, max: uint32(max)})
	m.tableEntries += uint64(max)
}

type tableType struct {
	ref      byte
	min, max uint32
}

func (m *module) memory(r *reader) {
	min, _ := r.limits()
	if r.err == nil && min > 65536 {
		r.fail("memory minimum %d pages over 4 GiB", min)
	}
	m.memories++
	m.memoryMinPages += uint64(min)
}

func (m *module) element(r *reader) {
	flags := r.u32()
	if r.err != nil {
		return
	}
	if flags > 7 {
		r.fail("element segment flags %d", flags)
		return
	}
	if flags&0b011 == 0b010 {
		r.u32() // table index
	}
	if flags&0b001 == 0 {
		m.constExpr(r) // offset of an active segment
	}
	exprs := flags&0b100 != 0
	if flags&0b011 != 0 { // element kind or reference type
		if exprs {
			r.refType()
		} else if k := r.byte(); r.err == nil && k != 0x00 {
			r.fail("element kind %#x", k)
		}
	}
	n := r.count("elements", 1, MaxElementEntries)
	m.elementEntries += uint64(n)
	if m.elementEntries > MaxElementEntries {
		r.failKind(ErrLimit, "%d element entries; the host allows %d", m.elementEntries, MaxElementEntries)
		return
	}
	for range n {
		if exprs {
			m.constExpr(r)
		} else {
			r.u32()
		}
	}
}

// constExpr reads a Wasm 2.0 constant expression up to its end.
func (m *module) constExpr(r *reader) {
	for r.err == nil {
		switch op := r.byte(); op {
		case opEnd:
			return
		case opI32Const:
			r.leb(5)
		case 0x42: // i64.const
			r.leb(10)
		case 0x43: // f32.const
			r.bytes(4)
		case 0x44: // f64.const
			r.bytes(8)
		case 0xD0: // ref.null
			r.refType()
		case 0xD2: // ref.func
			r.u32()
		case opGlobalGet:
			if idx := r.u32(); r.err == nil && idx >= m.interrupt() {
				r.fail("constant expression reads global %d, which does not exist", idx)
			}
		case 0xFD: // v128.const
			if sub := r.u32(); r.err == nil && sub != 12 {
				r.failKind(ErrUnsupported, "instruction 0xfd %d in a constant expression", sub)
			}
			r.bytes(16)
		default:
			if r.err == nil {
				r.failKind(ErrUnsupported, "instruction %#x in a constant expression", op)
			}
		}
	}
}

func (r *reader) valType() {
	if c := r.byte(); r.err == nil && !isValType(c) {
		r.failKind(ErrUnsupported, "value type %#x", c)
	}
}

func (r *reader) refType() {
	if c := r.byte(); r.err == nil && c != 0x70 && c != 0x6F {
		r.failKind(ErrUnsupported, "reference type %#x", c)
	}
}

func (r *reader) mutability() {
	if c := r.byte(); r.err == nil && c > 1 {
		r.fail("global mutability %#x", c)
	}
}

// checkNames checks a name section body (after its name) the way wazero
// reads it: each known subsection must fill exactly its declared size,
// and every count must fit its bytes. It returns the number of entries.
func checkNames(r *reader) uint64 {
	var total uint64
	for r.i < len(r.b) && r.err == nil {
		id := r.byte()
		s := r.sub(int(r.u32()))
		switch id {
		case 0:
			s.name()
		case 1:
			n := s.count("function names", 2, MaxNames)
			total += uint64(n)
			for range n {
				s.u32()
				s.name()
			}
		case 2:
			n := s.count("local names", 2, MaxNames)
			total += uint64(n)
			for range n {
				s.u32()
				k := s.count("local names", 2, MaxNames)
				total += uint64(k)
				for range k {
					s.u32()
					s.name()
				}
			}
		default:
			s.i = len(s.b)
		}
		s.end("name subsection")
		if s.err != nil {
			r.err = s.err
		}
	}
	return total
}
