package bench

import (
	"fmt"
	"image/color"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
}

// Series is a named set of request results (one target, one run).
type Series struct {
	Name    string
	Results []Result
}

// PlotLatencyCDF writes a PNG with the empirical CDFs of TTFT, TPOT and E2E
// latency of each series.
func PlotLatencyCDF(path string, series ...Series) error {
	p := plot.New()
	p.Title.Text = "Latency distribution (CDF)"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of requests"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	dashes := [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}}
	for si, s := range series {
		metrics := []struct {
			name string
			get  func(*Result) time.Duration
		}{{"TTFT", func(r *Result) time.Duration { return r.TTFT }}, {"TPOT", (*Result).TPOT}, {"E2E", func(r *Result) time.Duration { return r.E2E }}}
		for mi, m := range metrics {
			var v []float64
			for i := range s.Results {
				if r := &s.Results[i]; r.OK() && m.get(r) > 0 {
					v = append(v, ms(m.get(r)))
				}
			}
			if len(v) == 0 {
				continue
			}
			sort.Float64s(v)
			pts := make(plotter.XYs, len(v))
			for i, x := range v {
				pts[i] = plotter.XY{X: x, Y: float64(i+1) / float64(len(v))}
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			line.Color = palette[si%len(palette)]
			line.Dashes = dashes[mi]
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(fmt.Sprintf("%s %s", s.Name, m.name), line)
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// SweepPoint is one concurrency level of a sweep.
type SweepPoint struct {
	Concurrency int
	Summary     Summary
}

// PlotThroughput writes a PNG of output tokens/s and median TPOT against
// concurrency, one line per named sweep.
func PlotThroughput(path string, sweeps map[string][]SweepPoint) error {
	p := plot.New()
	p.Title.Text = "Output throughput against concurrency"
	p.X.Label.Text = "concurrency"
	p.Y.Label.Text = "output tokens/s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	names := make([]string, 0, len(sweeps))
	for n := range sweeps {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		pts := plotter.XYs{}
		for _, sp := range sweeps[n] {
			pts = append(pts, plotter.XY{X: float64(sp.Concurrency), Y: sp.Summary.OutputTokensPS})
		}
		line, scatter, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color = palette[i%len(palette)]
		scatter.Color = palette[i%len(palette)]
		p.Add(line, scatter)
		p.Legend.Add(n, line, scatter)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
