package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"
)

func logb2(x float64) float64 { return math.Log2(x) }

// BenchmarkDHTPlots draws lookup hops and re-provide RPCs against the
// cluster size from `go test -bench` output of the DHT simulation
// (core/routing BenchmarkDHTSim, BenchmarkDHTReprovide): the files named
// by SLUICE_BENCH_DHT (comma separated; default out/dht.txt, which make
// bench writes, and ../../bench-dht.txt, which make bench-dht writes,
// whichever exist). Writes out/dht-hops.png and out/dht-reprovide.png.
func BenchmarkDHTPlots(b *testing.B) {
	paths := strings.Split(os.Getenv("SLUICE_BENCH_DHT"), ",")
	if os.Getenv("SLUICE_BENCH_DHT") == "" {
		paths = nil
		for _, p := range []string{filepath.Join(outDir(b), "dht.txt"), filepath.Join("..", "..", "bench-dht.txt")} {
			if _, err := os.Stat(p); err == nil {
				paths = append(paths, p)
			}
		}
	}
	if len(paths) == 0 {
		b.Fatal("no DHT simulation output: run make bench (writes e2e/bench/out/dht.txt) or make bench-dht, or set SLUICE_BENCH_DHT")
	}
	lines, err := parseBench(paths...)
	if err != nil {
		b.Fatal(err)
	}
	out := outDir(b)
	ok, err := plotVsN(filepath.Join(out, "dht-hops.png"), "DHT simulation: lookups vs cluster size", "per lookup", map[string]plotter.XYs{
		"hops p99":     seriesVsN(lines, "BenchmarkDHTSim/", "hops-p99"),
		"messages p50": seriesVsN(lines, "BenchmarkDHTSim/", "msgs-p50"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if !ok {
		b.Fatalf("no BenchmarkDHTSim results in %v", paths)
	}
	b.Logf("wrote %s from %v", filepath.Join(out, "dht-hops.png"), paths)
	ok, err = plotVsN(filepath.Join(out, "dht-reprovide.png"), "Re-providing 10k keys: lookup RPCs per key per cycle", "lookup RPCs / key", map[string]plotter.XYs{
		"one by one": seriesVsN(lines, "BenchmarkDHTReprovide/", "lookups/key-before"),
		"swept":      seriesVsN(lines, "BenchmarkDHTReprovide/", "lookups/key-after"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if ok {
		b.Logf("wrote %s", filepath.Join(out, "dht-reprovide.png"))
	} else {
		b.Logf("no BenchmarkDHTReprovide results in %v: dht-reprovide.png not redrawn (make bench-dht)", paths)
	}
}
