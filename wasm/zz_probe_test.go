package wasm_test

import (
	"os"
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func TestZZProbe(t *testing.T) {
	ctx := context.Background()
	rc := wazero.NewRuntimeConfig().WithCompilationCache(testCache).WithCloseOnContextDone(os.Getenv("ENSURE") == "1")
	if os.Getenv("INTERP") == "1" {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	rt.NewHostModuleBuilder("sluice").NewFunctionBuilder().WithFunc(func(int32, int32, int32) {}).Export("log").Instantiate(ctx)
	cm, err := rt.CompileModule(ctx, guest(t, probeGuest))
	if err != nil {
		t.Fatal(err)
	}
	for _, sys := range []bool{false, true} {
		mc := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize")
		if sys {
			mc = mc.WithSysNanotime().WithSysWalltime()
		}
		m, err := rt.InstantiateModule(ctx, cm, mc)
		if err != nil {
			t.Fatal(err)
		}
		v := m.ExportedFunction("sluice_abi_version")

		stack := make([]uint64, 4)
		start := time.Now()
		for range 10000 {
			v.CallWithStack(ctx, stack)
		}
		t.Logf("sys=%v version: %v/op", sys, time.Since(start)/10000)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		start = time.Now()
		for range 10000 {
			v.CallWithStack(cctx, stack)
		}
		cancel()
		t.Logf("sys=%v version with deadline ctx: %v/op", sys, time.Since(start)/10000)
		for _, fn := range []string{"parse_bench", "alloc_bench"} {
			start = time.Now()
			m.ExportedFunction(fn).Call(ctx, 1000)
			t.Logf("%s: %v/op", fn, time.Since(start)/1000)
		}
		res, _ := m.ExportedFunction("sluice_alloc").Call(ctx, 4096)
		ptr := uint32(res[0])
		doc := []byte(`resolve{"action":"resolve","reference":{"registry":"docker.io","repository":"library/nginx","tag":"1.27","kind":"manifest"},"mirrors":["docker.io"]}`)
		m.Memory().Write(ptr, doc)
		d := m.ExportedFunction("sluice_decide")
		for _, n := range []int{1, 10, 100, 1000, 5000} {
			start = time.Now()
			for range n {
				stack[0], stack[1], stack[2], stack[3] = uint64(ptr), 7, uint64(ptr+7), uint64(len(doc)-7)
				if err := d.CallWithStack(ctx, stack); err != nil {
					t.Fatal(err)
				}
			}
			el := time.Since(start) / time.Duration(n)
			g, _ := m.ExportedFunction("numgc").Call(ctx)
			h, _ := m.ExportedFunction("heap").Call(ctx)
			t.Logf("decide x%d: %v/op numgc=%d heapKB=%d", n, el, g[0], h[0])
			if sys {
				m.ExportedFunction("yield").Call(ctx)
			}
		}
	}
}

var probeGuest = "zzprobe"
