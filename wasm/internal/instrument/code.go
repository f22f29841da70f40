package instrument

import (
	"encoding/binary"
	"fmt"
)

// The instruction sequences inserted into function bodies. $interrupt,
// $fuel and $scratch are the appended globals (see the package comment).
type checks struct {
	interrupt, fuel, scratch uint32
	importedFuncs            uint32
	spend                    []byte // at function entry and loop headers
	afterHost                []byte // after a call of an imported function
}

func newChecks(interrupt, importedFuncs uint32) *checks {
	c := &checks{interrupt: interrupt, fuel: interrupt + 1, scratch: interrupt + 2, importedFuncs: importedFuncs}
	// fuel -= 1; if fuel == 0 { refuel and step into Go }
	s := c.global(nil, opGlobalGet, c.fuel)
	s = append(s, opI32Const, 1, opI32Sub)
	s = c.global(s, opGlobalSet, c.fuel)
	s = c.global(s, opGlobalGet, c.fuel)
	s = append(s, opI32Eqz, opIf, blockTypeNil)
	s = c.refuel(s)
	c.spend = append(s, opEnd)
	// if interrupt { unreachable }
	c.afterHost = c.trapIfInterrupted(nil)
	return c
}

func (c *checks) global(dst []byte, op byte, idx uint32) []byte {
	return binary.AppendUvarint(append(dst, op), uint64(idx))
}

// refuel resets the fuel, steps into Go once (memory.grow 0, which wazero
// runs in Go, so a stop-the-world is not held up) and traps if the host
// set the interrupt.
func (c *checks) refuel(dst []byte) []byte {
	dst = appendSLEB(append(dst, opI32Const), Fuel)
	dst = c.global(dst, opGlobalSet, c.fuel)
	dst = append(dst, opI32Const, 0, opMemoryGrow, 0x00, opDrop)
	return c.trapIfInterrupted(dst)
}

func (c *checks) trapIfInterrupted(dst []byte) []byte {
	dst = c.global(dst, opGlobalGet, c.interrupt)
	return append(dst, opIf, blockTypeNil, opUnreachable, opEnd)
}

// bulk returns the charge inserted before a bulk instruction whose length
// operand (an i32, on top of the stack) costs 1 + len>>shift units of
// fuel. The length is parked in $scratch while the fuel is charged; when
// the fuel is spent the guest refuels and steps into Go before the
// instruction runs, so a bulk instruction is never more than one between
// two interrupt checks.
func (c *checks) bulk(dst []byte, shift byte) []byte {
	dst = c.global(dst, opGlobalSet, c.scratch)
	dst = c.global(dst, opGlobalGet, c.fuel)
	dst = c.global(dst, opGlobalGet, c.scratch)
	dst = append(dst, opI32Const, shift, opI32ShrU, opI32Sub, opI32Const, 1, opI32Sub)
	dst = c.global(dst, opGlobalSet, c.fuel)
	dst = c.global(dst, opGlobalGet, c.fuel)
	dst = append(dst, opI32Const, 1, opI32LtS, opIf, blockTypeNil)
	dst = c.refuel(dst)
	dst = append(dst, opEnd)
	return c.global(dst, opGlobalGet, c.scratch)
}

// bulkShift is the fuel price of the bulk instructions (0xFC prefix) by
// sub-opcode: one unit per 2^shift bytes (memory) or entries (tables, 8
// bytes an entry), so that a unit of bulk work costs about what a loop
// iteration does.
var bulkShift = map[uint32]byte{
	8:  8, // memory.init
	10: 8, // memory.copy
	11: 8, // memory.fill
	12: 5, // table.init
	14: 5, // table.copy
	15: 5, // table.grow
	17: 5, // table.fill
}

// rewriteCode checks and instruments every function body of a code section.
func rewriteCode(body []byte, base int, m *module) ([]byte, error) {
	r := reader{b: body, base: base}
	n := r.count("function bodies", 3, MaxFunctions)
	out := binary.AppendUvarint(make([]byte, 0, len(body)+len(body)/4), uint64(n))
	c := newChecks(m.interrupt(), m.importedFuncs)
	var fn []byte
	for i := range n {
		size := r.u32()
		if r.err == nil && size > MaxFunctionBodyBytes {
			r.failKind(ErrLimit, "function body %d of %d bytes; the host allows %d", i, size, MaxFunctionBodyBytes)
		}
		code := r.sub(int(size))
		if r.err != nil {
			return nil, r.err
		}
		var err error
		if fn, err = c.rewriteFunc(fn[:0], &code, m); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	r.end("code section")
	return out, r.err
}

func (c *checks) rewriteFunc(dst []byte, r *reader, m *module) ([]byte, error) {
	groups := r.count("local groups", 2, MaxLocals)
	var locals uint64
	for range groups {
		locals += uint64(r.u32())
		r.valType()
	}
	if r.err == nil && locals > MaxLocals {
		r.failKind(ErrLimit, "%d locals; the host allows %d a function", locals, MaxLocals)
	}
	if m.totalLocals += locals; r.err == nil && m.totalLocals > MaxTotalLocals {
		r.failKind(ErrLimit, "%d locals in all; the host allows %d", m.totalLocals, MaxTotalLocals)
	}
	if r.err != nil {
		return nil, r.err
	}
	code := r.b
	dst = append(dst, code[:r.i]...)
	dst = append(dst, c.spend...) // function entry: recursion without loops
	var blocks uint64             // control instructions: basic blocks of the compiler
	for r.i < len(r.b) {
		start := r.i
		op := r.byte()
		var after []byte
		switch op {
		case 0x02, 0x04, 0x05, 0x0B, 0x0C, 0x0D: // block, if, else, end, br, br_if
			blocks++
		case 0x0E: // br_table: a branch a label
			blocks += 1 + uint64(r.peekU32())
		}
		switch op {
		case opLoop:
			blocks++
			r.blockType()
			dst = append(dst, code[start:r.i]...)
			dst = append(dst, c.spend...)
			continue
		case opGlobalGet, opGlobalSet:
			if idx := r.u32(); r.err == nil && idx >= c.interrupt {
				return nil, fmt.Errorf("%w: global index %d out of range", ErrMalformed, idx)
			}
		case opCall:
			if idx := r.u32(); r.err == nil && idx < c.importedFuncs {
				after = c.afterHost
			}
		case opCallIndirect:
			// The callee may be an imported function placed in a table:
			// check as after a direct host call (a loop of host calls
			// would otherwise run Fuel of them between two checks).
			r.u32()
			r.u32()
			if c.importedFuncs > 0 {
				after = c.afterHost
			}
		case 0xFC:
			sub := r.u32()
			r.i = start + 1
			if shift, ok := bulkShift[sub]; ok && r.err == nil {
				dst = c.bulk(dst, shift)
			}
			r.prefixFC()
		default:
			r.immediates(op)
		}
		if r.err != nil {
			return nil, r.err
		}
		dst = append(dst, code[start:r.i]...)
		dst = append(dst, after...)
	}
	if len(code) == 0 || code[len(code)-1] != opEnd {
		return nil, fmt.Errorf("%w: function body does not end with end", ErrMalformed)
	}
	m.maxBlocks = max(m.maxBlocks, blocks)
	if m.compileCost += blocks * blocks; m.compileCost > MaxCompileCost {
		return nil, fmt.Errorf("%w: control flow too costly to compile (%d branches and blocks in this function; %d units in all, the host allows %d)", ErrLimit, blocks, m.compileCost, uint64(MaxCompileCost))
	}
	return dst, r.err
}
