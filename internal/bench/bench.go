// Package bench measures container start latency of scc against runc on a
// private containerd, alternating the runtimes within one run so that
// machine drift affects both alike.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/ocilayout"
)

// Runtime is one runtime under test.
type Runtime struct {
	Name    string // label in the report
	Runtime string // containerd runtime type
	Config  string // shim config (scc), passed as --runtime-config-path
}

// Options configure a benchmark run.
type Options struct {
	Dir      string // private containerd and scratch files; removed at the end
	BinDir   string // containerd, ctr, containerd-shim-runc-v2
	ShimDir  string // containerd-shim-scc-v2
	GuestDir string // scc guest image
	Runs     int    // measurements per runtime (at least 5 for medians)
	Busybox  string // static busybox for the image
	Progress io.Writer
}

// Result holds the wall times of one runtime.
type Result struct {
	Runtime Runtime
	Times   []time.Duration
}

// Median returns the median time.
func (r Result) Median() time.Duration { return percentile(r.Times, 50) }

// P90 returns the 90th percentile time.
func (r Result) P90() time.Duration { return percentile(r.Times, 90) }

func percentile(ts []time.Duration, p int) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := (p*len(s) + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

const imageRef = "scc.local/busybox:latest"

// ColdStart measures `ctr run --rm <image> /bin/true` for runc, for scc
// booting a fresh VM and for scc restoring its VM from a template,
// alternating runtimes.
func ColdStart(ctx context.Context, opts Options) (_ []Result, retErr error) {
	if opts.Runs < 1 {
		return nil, fmt.Errorf("runs must be at least 1")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err := ctrd.Clean(opts.Dir); err != nil && retErr == nil {
			retErr = err
		}
	}()
	coldConfig, err := writeConfig(opts, "cold", false)
	if err != nil {
		return nil, err
	}
	restoreConfig, err := writeConfig(opts, "restore", true)
	if err != nil {
		return nil, err
	}
	// The template of the restore configuration exists before the
	// measurements: they measure the warm path.
	if out, err := exec.CommandContext(ctx, filepath.Join(opts.ShimDir, "scc"), "snapshot", "create", "--config", restoreConfig).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("create VM template: %v: %s", err, out)
	}
	d, err := ctrd.Start(ctx, ctrd.Options{Dir: filepath.Join(opts.Dir, "c"), BinDir: opts.BinDir, ShimDir: opts.ShimDir})
	if err != nil {
		return nil, err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	var img bytes.Buffer
	if err := ocilayout.WriteBusybox(&img, ocilayout.BusyboxOptions{Busybox: opts.Busybox, Ref: imageRef}); err != nil {
		return nil, err
	}
	imp := d.Ctr(ctx, "images", "import", "-")
	imp.Stdin = &img
	if out, err := imp.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("import image: %v: %s", err, out)
	}

	results := []Result{
		{Runtime: Runtime{Name: "runc", Runtime: "io.containerd.runc.v2"}},
		{Runtime: Runtime{Name: "scc (cold boot)", Runtime: "io.containerd.scc.v2", Config: coldConfig}},
		{Runtime: Runtime{Name: "scc (restore)", Runtime: "io.containerd.scc.v2", Config: restoreConfig}},
	}
	// One unmeasured run each warms the page cache and containerd.
	for i := -1; i < opts.Runs; i++ {
		for j := range results {
			rt := results[j].Runtime
			id := fmt.Sprintf("bench-%d-%d", j, i+1)
			t, err := runOnce(ctx, d, rt, id)
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", rt.Name, i+1, err)
			}
			if i >= 0 {
				results[j].Times = append(results[j].Times, t)
				if opts.Progress != nil {
					fmt.Fprintf(opts.Progress, "  %-16s run %d/%d  %v\n", rt.Name, i+1, opts.Runs, t.Round(time.Millisecond))
				}
			}
		}
	}
	return results, nil
}

func runOnce(ctx context.Context, d *ctrd.Daemon, rt Runtime, id string) (time.Duration, error) {
	args := []string{"run", "--rm", "--runtime", rt.Runtime}
	if rt.Config != "" {
		args = append(args, "--runtime-config-path", rt.Config)
	}
	args = append(args, imageRef, id, "/bin/true")
	cmd := d.Ctr(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return elapsed, nil
}

// Report writes the results as a table with medians, p90 and the ratio of
// each median to the first result's (the baseline).
func Report(w io.Writer, title string, results []Result) {
	fmt.Fprintf(w, "%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "runtime\truns\tmedian\tp90\tratio to "+results[0].Runtime.Name)
	base := results[0].Median()
	for _, r := range results {
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.1fx", float64(r.Median())/float64(base))
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%s\n", r.Runtime.Name, len(r.Times), r.Median().Round(time.Millisecond), r.P90().Round(time.Millisecond), ratio)
	}
	tw.Flush()
}

// writeConfig writes an scc shim configuration for one mode.
func writeConfig(opts Options, name string, snapshots bool) (string, error) {
	p := filepath.Join(opts.Dir, name+".toml")
	cfg := fmt.Sprintf("state_dir = %q\nguest_dir = %q\n\n[vm]\nlog_dir = %q\n\n[snapshot]\nenabled = %t\nauto_create = false\ndir = %q\n",
		filepath.Join(opts.Dir, "run"), opts.GuestDir, filepath.Join(opts.Dir, "logs"), snapshots, filepath.Join(opts.Dir, "snapshots"))
	return p, os.WriteFile(p, []byte(cfg), 0o644)
}
