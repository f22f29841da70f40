package wasm_test

import (
	"testing"
	"time"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// TestEngine_HostCallsHonourDeadline checks that work a guest makes the
// host do is stopped near the deadline: a host call reached through
// call_indirect is followed by an interrupt check as a direct call is,
// and one fd_write whose iovecs name the same large buffer a million
// times stops when the deadline passes instead of stalling its caller
// (and a reload waiting for it) for hours.
func TestEngine_HostCallsHonourDeadline(t *testing.T) {
	t.Parallel()
	// fillIovecs writes n iovecs {0, size} at 64 KiB, with the first
	// parameter of sluice_decide as the counter:
	//
	//	(local.set 0 (i32.const 0))
	//	(loop
	//	  (i32.store offset=65536 (local.get 0) (i32.const 0))
	//	  (i32.store offset=65540 (local.get 0) (i32.const size))
	//	  (br_if 0 (i32.lt_u (local.tee 0 (i32.add (local.get 0) (i32.const 8))) (i32.const 8n))))
	fillIovecs := func(n, size int64) []byte {
		return cat(i32Const(0), []byte{0x21, 0x00, 0x03, 0x40},
			[]byte{0x20, 0x00}, i32Const(0), []byte{0x36, 0x02}, uleb(65536),
			[]byte{0x20, 0x00}, i32Const(size), []byte{0x36, 0x02}, uleb(65540),
			[]byte{0x20, 0x00}, i32Const(8), []byte{0x6A, 0x22, 0x00}, i32Const(8*n), []byte{0x49, 0x0D, 0x00, 0x0B})
	}
	const iovecs = 1 << 20
	tests := []struct {
		name  string
		guest rawGuest
	}{
		// (table 1 1 funcref) (elem (i32.const 0) $random_get)
		// (loop (drop (call_indirect (type $random_get) (i32.const 0) (i32.const 1 MiB) (i32.const 0))) (br 0))
		{"call_indirect", rawGuest{memory: pages(17), randomGet: true,
			tables: [][]byte{{0x70, 0x01, 0x01, 0x01}}, elems: []uint64{0},
			decide: forever(i32Const(0), i32Const(1<<20), i32Const(0), []byte{0x11, typeRandomGet, 0x00, 0x1A})}},
		// fillIovecs(2²⁰, 16 MiB)
		// (drop (call $fd_write (i32.const 1) (i32.const 65536) (i32.const 2²⁰) (i32.const 0)))
		{"fd_write", rawGuest{memory: pages(1 + 128 + 1), fdWrite: true,
			decide: cat(fillIovecs(iovecs, 8<<20), i32Const(1), i32Const(65536), i32Const(iovecs), i32Const(0),
				[]byte{0x10, 0x00, 0x1A}, i64Const(allowResult))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !isolate(t, childTimeout) {
				return
			}
			e, err := wasm.New(t.Context(), tt.name, tt.guest.bytes(), nil, wasm.WithPoolSize(1), wasm.WithTimeout(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for range 2 {
				start := time.Now()
				_, err := e.Decide(t.Context(), policy.ActionResolve, anyInput)
				elapsed := time.Since(start)
				if wasm.CodeOf(err) != wasm.CodeTimeout {
					t.Errorf("Decide = %v, want code timeout", err)
				}
				if elapsed > 500*time.Millisecond {
					t.Errorf("Decide under a 50ms deadline took %v", elapsed)
				}
			}
		})
	}
}
