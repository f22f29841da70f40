package bench

import (
	"bufio"
	"fmt"
	"image/color"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotPullTimes draws the median pull time against the image size, one
// line per path (static registry, through a peer) and layer count.
func plotPullTimes(path string, cells []pullCell) error {
	p := plot.New()
	p.Title.Text = "ctr pull: median time vs image size"
	p.X.Label.Text = "image size (MB)"
	p.Y.Label.Text = "pull time (s)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	var args []any
	for _, layers := range []int{1, 4} {
		var st, pe plotter.XYs
		for _, c := range cells {
			if c.Layers == layers {
				st = append(st, plotter.XY{X: float64(c.MB), Y: c.Static.Med})
				pe = append(pe, plotter.XY{X: float64(c.MB), Y: c.Peer.Med})
			}
		}
		if len(st) == 0 {
			continue
		}
		args = append(args, fmt.Sprintf("static registry, %d layer(s)", layers), st, fmt.Sprintf("through a peer, %d layer(s)", layers), pe)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// benchLine is one result line of `go test -bench` output: the benchmark
// name and its metrics by unit.
type benchLine struct {
	Name    string
	Metrics map[string]float64
}

var benchNameN = regexp.MustCompile(`/N=(\d+)`)

// parseBench reads the result lines of `go test -bench` output files.
func parseBench(paths ...string) ([]benchLine, error) {
	var out []benchLine
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") {
				continue
			}
			if _, err := strconv.Atoi(fs[1]); err != nil { // iterations
				continue
			}
			l := benchLine{Name: fs[0], Metrics: map[string]float64{}}
			for i := 2; i+1 < len(fs); i += 2 {
				if v, err := strconv.ParseFloat(fs[i], 64); err == nil {
					l.Metrics[fs[i+1]] = v
				}
			}
			out = append(out, l)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// seriesVsN collects metric unit of the benchmarks whose name starts with
// prefix, against their N=… sub-benchmark, sorted by N.
func seriesVsN(lines []benchLine, prefix, unit string) plotter.XYs {
	var xy plotter.XYs
	for _, l := range lines {
		m := benchNameN.FindStringSubmatch(l.Name)
		v, ok := l.Metrics[unit]
		if !strings.HasPrefix(l.Name, prefix) || m == nil || !ok {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		xy = append(xy, plotter.XY{X: float64(n), Y: v})
	}
	sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
	return xy
}

// plotVsN draws named series against N (cluster size); series with no
// point are left out, and no file is written when none has one.
func plotVsN(path, title, ylabel string, series map[string]plotter.XYs) (bool, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "nodes (N)"
	p.Y.Label.Text = ylabel
	p.Legend.Top, p.Legend.Left = true, true
	names := make([]string, 0, len(series))
	for k, v := range series {
		if len(v) > 0 {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return false, nil
	}
	sort.Strings(names)
	var args []any
	for _, k := range names {
		args = append(args, k, series[k])
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return false, err
	}
	// log2(N)+2, the hop limit of issue 14, where hops are drawn.
	if _, ok := series["hops p99"]; ok {
		lim := plotter.NewFunction(func(n float64) float64 { return logb2(n) + 2 })
		lim.Color = color.Gray{Y: 128}
		lim.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(lim)
		p.Legend.Add("log2 N + 2", lim)
		p.X.Min, p.X.Max = 0, series["hops p99"][len(series["hops p99"])-1].X*1.05
		p.Y.Min = 0
	}
	return true, p.Save(6*vg.Inch, 4*vg.Inch, path)
}
