package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// summary is the median and range of a series.
type summary struct{ Med, Min, Max float64 }

func summarize(v []float64) summary {
	if len(v) == 0 {
		return summary{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Med: m, Min: s[0], Max: s[len(s)-1]}
}

// format prints "med (min–max)" with prec decimals.
func (s summary) format(prec int) string {
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.Med, prec, s.Min, prec, s.Max)
}

// envInt reads a positive integer knob, or def.
func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// envInts reads a comma-separated list of positive integers, or def.
func envInts(tb testing.TB, name string, def []int) []int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want positive integers, comma separated", name, v)
		}
		out = append(out, n)
	}
	return out
}

// outDir is e2e/bench/out (tests run in their package directory), or
// SLUICE_BENCH_OUT.
func outDir(tb testing.TB) string {
	tb.Helper()
	d := os.Getenv("SLUICE_BENCH_OUT")
	if d == "" {
		d = "out"
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	return d
}

// writeOut writes name into the output directory and logs where.
func writeOut(tb testing.TB, name, content string) {
	tb.Helper()
	p := filepath.Join(outDir(tb), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("wrote %s", p)
}

// machine describes the box: CPU count and model, for every report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s", runtime.NumCPU(), model)
}
