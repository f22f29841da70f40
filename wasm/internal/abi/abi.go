// Package abi holds the host side of the sluice Wasm ABI v1: the names of
// the exports and imports, the packing of results, the encoder of the input
// document and the parser of a guest's decision. It has no wazero
// dependency so that it can be tested and fuzzed on its own.
package abi

// Version is the ABI version this host speaks; sluice_abi_version must
// return it.
const Version = 1

// Names of the guest exports and host imports (see wasm/ABI.md).
const (
	ExportVersion   = "sluice_abi_version"
	ExportAlloc     = "sluice_alloc"
	ExportDecide    = "sluice_decide"
	ExportConfigure = "sluice_configure"
	ExportMemory    = "memory"
	// StartFunction is the WASI reactor initializer (Go's -buildmode=c-shared).
	StartFunction = "_initialize"

	HostModule = "sluice"
	HostLog    = "log"
)

// Limits on what the host reads from a guest.
const (
	// MaxResultLen bounds the decision document a guest may return.
	MaxResultLen = 64 << 10
	// MaxLogLen bounds one log message; longer messages are truncated.
	MaxLogLen = 4 << 10
)

// Unpack splits the i64 returned by sluice_decide into the pointer (high 32
// bits) and the length (low 32 bits) of the decision in guest memory.
func Unpack(v uint64) (ptr, n uint32) {
	return uint32(v >> 32), uint32(v)
}

// Pack is the inverse of Unpack, for guests and tests.
func Pack(ptr, n uint32) uint64 {
	return uint64(ptr)<<32 | uint64(n)
}
