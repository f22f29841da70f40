// Command abi2 claims ABI version 2, which this host must refuse at load.
package main

//go:wasmexport sluice_abi_version
func version() int32 { return 2 }

//go:wasmexport sluice_alloc
func alloc(n int32) int32 { return 0 }

//go:wasmexport sluice_decide
func decide(a, b, c, d int32) int64 { return 0 }

func main() {}
