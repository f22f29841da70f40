package wasm_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv names the test a re-executed test binary runs (see isolate).
const childEnv = "SLUICE_WASM_TEST_CHILD"

// isolate runs the calling test in a child process, the test binary
// re-executed with only that test selected: a hostile module that
// defeats the sandbox may kill the process (a fatal out-of-memory error
// cannot be recovered) or stall it, and must fail the test, not the
// whole binary. In the parent, isolate runs the child and reports whether
// it passed; it returns true only in the child, where the caller then
// runs the test body. The child's address space is capped (asLimit) so
// that an allocation a small node could not make fails here too.
func isolate(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		capAddressSpace(t)
		return true
	}
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("child did not finish within %v:\n%s", timeout, tail(out))
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("child failed (%v):\n%s", err, tail(out))
	}
	return false
}

// asLimit caps the address space of a child: a Go test binary maps a few
// hundred MiB, wazero compiles a module into a few MiB more; a module that
// makes wazero allocate gigabytes dies here as it would on a small node.
const asLimit = 4 << 30

func capAddressSpace(t *testing.T) {
	if raceEnabled {
		return // the race detector maps terabytes of shadow memory
	}
	lim := syscall.Rlimit{Cur: asLimit, Max: asLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		t.Fatalf("cap the child's address space: %v", err)
	}
}

// tail keeps the start (a fatal error's message) and the end of out.
func tail(b []byte) string {
	const n = 2000
	if len(b) > 2*n {
		return string(b[:n]) + "\n…\n" + string(b[len(b)-n:])
	}
	return string(b)
}
