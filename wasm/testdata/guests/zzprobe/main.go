package main

import (
	"runtime"

	"github.com/sluice-oci/sluice/sdk"
)

var _ = sdk.Handle(func(in sdk.Input) sdk.Decision { return sdk.Allow() })

//go:wasmexport yield
func yield() int32 { runtime.Gosched(); return 1 }

//go:wasmexport numgc
func numgc() int32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int32(ms.NumGC)
}

//go:wasmexport heap
func heap() int32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int32(ms.HeapAlloc >> 10)
}

func main() {}

var doc = []byte(`{"action":"resolve","reference":{"registry":"docker.io","repository":"library/nginx","tag":"1.27","kind":"manifest"},"mirrors":["docker.io"]}`)

//go:wasmexport parse_bench
func parseBench(n int32) int32 {
	for range n {
		sdk.ParseInput(doc)
	}
	return n
}

//go:wasmexport alloc_bench
func allocBench(n int32) int32 {
	for range n {
		sinkS = string(doc[3:20])
	}
	return n
}

var sinkS string
