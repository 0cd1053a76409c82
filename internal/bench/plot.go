package bench

import (
	"errors"
	"fmt"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws the report as one PNG at path with two panels side by
// side: grouped bars of the median start time per mode, cold and warm
// (left), and the scale-out time against N per mode (right). A panel
// without data is left out.
func WritePlot(path string, rep *Report) error {
	var panels []*plot.Plot
	if p, err := startPlot(rep); err != nil {
		return err
	} else if p != nil {
		panels = append(panels, p)
	}
	if p, err := scalePlot(rep); err != nil {
		return err
	} else if p != nil {
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return errors.New("plot: no start or scale-out figures in the report")
	}
	img := vgimg.New(vg.Length(len(panels))*6*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: 8 * vg.Millimeter, PadTop: 3 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 3 * vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{panels}, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	return nil
}

// startPlot draws runc's and scc's median start times, cold (scc boots)
// and warm (scc restores): nil when the report has no start figures.
func startPlot(rep *Report) (*plot.Plot, error) {
	runc, ok1 := rep.series(ModeRunc)
	cold, ok2 := rep.series(ModeSCCCold)
	warm, ok3 := rep.series(ModeSCCRestore)
	if !ok1 || !ok2 || !ok3 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Start: ctr run --rm /bin/true, median of %d", rep.Settings.Runs)
	p.Y.Label.Text = "seconds"
	p.Y.Min = 0
	names := []string{"cold start\n(scc boots its VM)", "warm start\n(scc restores a template)"}
	r := Summarize(runc.Samples).Median.Seconds()
	runcVals := plotter.Values{r, r}
	sccVals := plotter.Values{Summarize(cold.Samples).Median.Seconds(), Summarize(warm.Samples).Median.Seconds()}
	if pooled, ok := rep.series(ModeSCCPool); ok {
		names = append(names, "warm start\n(scc takes a pooled VM)")
		runcVals = append(runcVals, r)
		sccVals = append(sccVals, Summarize(pooled.Samples).Median.Seconds())
	}
	if reused, ok := rep.series(ModeSCCReuse); ok && len(reused.Samples) > 0 {
		names = append(names, "warm start\n(scc reuses a cleaned VM)")
		runcVals = append(runcVals, r)
		sccVals = append(sccVals, Summarize(reused.Samples).Median.Seconds())
	}
	p.NominalX(names...)
	groups := []struct {
		name string
		vals plotter.Values
	}{
		{"runc", runcVals},
		{"scc" + accelSuffix(rep), sccVals},
	}
	p.Add(plotter.NewGrid())
	width := vg.Points(40)
	top := 0.0
	for i, g := range groups {
		bars, err := plotter.NewBarChart(g.vals, width)
		if err != nil {
			return nil, fmt.Errorf("plot start: %w", err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(i-len(groups)/2)*width + width/2*vg.Length(1-len(groups)%2)
		p.Add(bars)
		p.Legend.Add(g.name, bars)

		// The value on top of each bar: the bars alone hide runc's.
		var xyl plotter.XYLabels
		for x, v := range g.vals {
			xyl.XYs = append(xyl.XYs, plotter.XY{X: float64(x), Y: v})
			xyl.Labels = append(xyl.Labels, formatDuration(time.Duration(v*float64(time.Second))))
			top = max(top, v)
		}
		labels, err := plotter.NewLabels(xyl)
		if err != nil {
			return nil, fmt.Errorf("plot start: %w", err)
		}
		for k := range labels.TextStyle {
			labels.TextStyle[k].XAlign = draw.XCenter
		}
		labels.Offset = vg.Point{X: bars.Offset, Y: vg.Points(3)}
		p.Add(labels)
	}
	// Room above the tallest bar for its label and the legend.
	p.Y.Max = top * 1.2
	p.Legend.Top = true
	return p, nil
}

// scalePlot draws the median time until N containers exited against N,
// one line per mode: nil when the report has no scale-out figures.
func scalePlot(rep *Report) (*plot.Plot, error) {
	if len(rep.ScaleOut) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Scale-out: N at once, until all exited (%d cores)", rep.Machine.Cores)
	p.X.Label.Text = "N containers"
	p.Y.Label.Text = "seconds (median)"
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, n := range rep.Settings.ScaleN {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: fmt.Sprint(n)})
	}
	p.X.Tick.Marker = ticks
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	top := 0.0
	for i, s := range rep.ScaleOut {
		var xys plotter.XYs
		for _, pt := range s.Points {
			if len(pt.Samples) > 0 {
				xys = append(xys, plotter.XY{X: float64(pt.N), Y: Summarize(pt.Samples).Median.Seconds()})
				top = max(top, xys[len(xys)-1].Y)
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("plot scale-out: %w", err)
		}
		line.Color = plotutil.Color(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		name := s.Mode.Name
		if s.Mode.Key != ModeRunc {
			name += accelSuffix(rep)
		}
		p.Legend.Add(name, line, points)
	}
	// Room above the highest point for the legend.
	p.Y.Max = top * 1.3
	p.Legend.Top = true
	p.Legend.Left = true
	return p, nil
}

// accelSuffix marks scc's series when its VMs were emulated.
func accelSuffix(rep *Report) string {
	if rep.Machine.Accelerator == "" || rep.Machine.Accelerator == "kvm" {
		return ""
	}
	return ", " + rep.Machine.Accelerator
}
