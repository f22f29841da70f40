package wasm_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tetratelabs/wazero"

	"github.com/sluice-oci/sluice/wasm"
)

// Guests are built once per test binary into buildDir, and compiled code
// is kept across runs in a wazero file cache (compiling a Go guest takes
// ~1 s, much more under -race).
var (
	buildDir  string
	buildMu   sync.Mutex
	builds    = map[string]buildResult{}
	testCache wazero.CompilationCache
)

type buildResult struct {
	wasm []byte
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-wasm-guests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	cacheDir := filepath.Join(os.TempDir(), "sluice-wasm-test-cache")
	if testCache, err = wazero.NewCompilationCacheWithDir(cacheDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = testCache.Close(context.Background())
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// guest returns the Wasm bytes of a guest: "examples/NAME" for
// sdk/examples/NAME, otherwise wasm/testdata/guests/NAME.
func guest(t testing.TB, name string) []byte {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	r, ok := builds[name]
	if !ok {
		r = build(name)
		builds[name] = r
	}
	if r.err != nil {
		t.Fatalf("build guest %s: %v", name, r.err)
	}
	return r.wasm
}

func build(name string) buildResult {
	pkg := "./wasm/testdata/guests/" + name
	if rest, ok := strings.CutPrefix(name, "examples/"); ok {
		pkg = "./sdk/examples/" + rest
	}
	out := filepath.Join(buildDir, filepath.Base(name)+".wasm")
	cmd := exec.Command("nice", "go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Dir = ".." // module root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return buildResult{err: fmt.Errorf("%s: %w\n%s", cmd, err, b)}
	}
	b, err := os.ReadFile(out)
	return buildResult{wasm: b, err: err}
}

// newEngine opens a guest with the shared compilation cache and a fresh
// registry, closed at the end of the test. The deadline defaults to 5 s:
// tests run in parallel, under -race, on shared machines; those about
// deadlines set their own.
func newEngine(t testing.TB, name string, data map[string]any, opts ...wasm.Option) (*wasm.Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts = append([]wasm.Option{wasm.WithCompilationCache(testCache), wasm.WithRegisterer(reg), wasm.WithTimeout(5 * time.Second)}, opts...)
	e, err := wasm.New(context.Background(), name, guest(t, name), data, opts...)
	if err != nil {
		t.Fatalf("wasm.New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, reg
}

// errorCount reads sluice_wasm_errors_total{module,code} from reg.
func errorCount(t testing.TB, reg prometheus.Gatherer, module string, code wasm.Code) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_wasm_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "module") == module && label(m, "code") == string(code) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
