// Command garbage is a hostile guest written against the raw ABI (no sdk):
// depending on a word in the input it returns garbage, a pointer outside
// its memory, an oversized result, panics, logs from a bad pointer or
// logs and prints ("chatty"). Otherwise it allows.
package main

import (
	"bytes"
	"os"
	"unsafe"
)

var in, out []byte

//go:wasmexport sluice_abi_version
func version() int32 { return 1 }

//go:wasmexport sluice_alloc
func alloc(n int32) int32 {
	in = make([]byte, n)
	return int32(uintptr(unsafe.Pointer(&in[0])))
}

//go:wasmimport sluice log
func hostLog(level int32, ptr uint32, n int32)

//go:wasmexport sluice_decide
func decide(actionPtr, actionLen, inputPtr, inputLen int32) int64 {
	off := uintptr(inputPtr) - uintptr(unsafe.Pointer(&in[0]))
	input := in[off : off+uintptr(inputLen)]
	switch {
	case bytes.Contains(input, []byte(`"garbage"`)):
		return result([]byte(`{"allow":tru`))
	case bytes.Contains(input, []byte(`"oob"`)):
		oob := uint64(0xFFFFFF00)<<32 | 200
		return int64(oob)
	case bytes.Contains(input, []byte(`"huge"`)):
		return int64(1<<32 | 1<<20)
	case bytes.Contains(input, []byte(`"panic"`)):
		panic("hostile guest panics")
	case bytes.Contains(input, []byte(`"logoob"`)):
		hostLog(0, 0xFFFFFFF0, 100)
	case bytes.Contains(input, []byte(`"chatty"`)):
		msg := []byte("hello from the guest")
		hostLog(4, uint32(uintptr(unsafe.Pointer(&msg[0]))), int32(len(msg)))
		os.Stdout.WriteString("printed to stdout\n")
	}
	return result([]byte(`{"allow":true}`))
}

func result(b []byte) int64 {
	out = b
	return int64(uintptr(unsafe.Pointer(&out[0])))<<32 | int64(len(out))
}

func main() {}
