//go:build wasip1

package sdk

import "unsafe"

// The exports of ABI v1. Pointers are offsets in the module's linear
// memory; Go's garbage collector does not move objects, and every buffer
// whose address the host holds is referenced from current.

//go:wasmexport sluice_abi_version
func sluiceABIVersion() int32 { return ABIVersion }

//go:wasmexport sluice_alloc
func sluiceAlloc(size int32) int32 {
	if size < 0 {
		return 0
	}
	return addr(current.alloc(int(size)))
}

//go:wasmexport sluice_configure
func sluiceConfigure(ptr, n int32) int32 {
	doc, ok := current.view(ptr, n)
	if !ok {
		Log(LevelError, "sdk: sluice_configure: data outside the sluice_alloc buffer")
		return 1
	}
	if err := current.configure(doc); err != nil {
		Log(LevelError, err.Error())
		return 2
	}
	return 0
}

//go:wasmexport sluice_decide
func sluiceDecide(actionPtr, actionLen, inputPtr, inputLen int32) int64 {
	action, ok1 := current.view(actionPtr, actionLen)
	input, ok2 := current.view(inputPtr, inputLen)
	if !ok1 || !ok2 {
		Log(LevelError, "sdk: sluice_decide: arguments outside the sluice_alloc buffer")
		return 0 // an empty result: the host reports bad_result
	}
	out, err := current.decide(action, input)
	if err != nil {
		Log(LevelError, err.Error())
		return 0
	}
	return int64(uint64(uint32(addr(out)))<<32 | uint64(uint32(len(out))))
}

// sluice_decide_compact is the optional fast path of ABI v1 (ABI.md
// "Compact input"): the host passes the action and the input in one
// binary layout that decodes without a parser.
//
//go:wasmexport sluice_decide_compact
func sluiceDecideCompact(ptr, n int32) int64 {
	input, ok := current.view(ptr, n)
	if !ok {
		Log(LevelError, "sdk: sluice_decide_compact: arguments outside the sluice_alloc buffer")
		return 0
	}
	out, err := current.decideCompact(input)
	if err != nil {
		Log(LevelError, err.Error())
		return 0
	}
	return int64(uint64(uint32(addr(out)))<<32 | uint64(uint32(len(out))))
}

// view returns the part of the last sluice_alloc buffer at [ptr, ptr+n):
// the SDK accepts only addresses it handed out.
func (g *guest) view(ptr, n int32) ([]byte, bool) {
	if len(g.in) == 0 || n < 0 {
		return nil, false
	}
	off := int64(ptr) - int64(addr(g.in))
	if off < 0 || off+int64(n) > int64(len(g.in)) {
		return nil, false
	}
	return g.in[off : off+int64(n)], true
}

func addr(b []byte) int32 {
	if len(b) == 0 {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

//go:wasmimport sluice log
func hostLog(level int32, ptr unsafe.Pointer, n int32)

// Log sends msg to the host's log at level.
func Log(level Level, msg string) {
	hostLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
}
