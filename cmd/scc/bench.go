package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sccontainers/scc/internal/bench"
	"github.com/sccontainers/scc/shim"
)

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	opts := bench.Options{Progress: os.Stderr, Version: shim.Version, QEMU: shim.DefaultConfig().VM.QEMU}
	self, _ := os.Executable()
	fs.IntVar(&opts.Runs, "runs", 5, "measured runs per mode and point (medians, p90)")
	fs.StringVar(&opts.Dir, "dir", "/tmp/scc-bench", "scratch directory (removed afterwards)")
	fs.StringVar(&opts.BinDir, "containerd-bin", os.Getenv("CONTAINERD_BIN"), "directory with containerd, ctr and containerd-shim-runc-v2")
	fs.StringVar(&opts.ShimDir, "shim-dir", filepath.Dir(self), "directory with containerd-shim-scc-v2 and scc")
	fs.StringVar(&opts.GuestDir, "guest", os.Getenv("GUEST_DIR"), "guest image directory")
	fs.StringVar(&opts.Busybox, "busybox", "/bin/busybox", "static busybox for the test image")
	fs.StringVar(&opts.Registry, "registry", os.Getenv("REGISTRY"), "distribution's registry binary, for the image phase")
	phases := fs.String("phases", "start,scale,memory,image", "what to measure, comma-separated")
	fs.IntVar(&opts.StartVMMemoryMiB, "start-vm-memory", shim.DefaultConfig().VM.MemoryMiB, "MiB of the scc VMs of the start measurements")
	fs.IntVar(&opts.ScaleVMMemoryMiB, "vm-memory", 256, "MiB of the scc VMs of scale-out and memory")
	scaleN := fs.String("scale", "1,2,4,8,16", "numbers of containers started at once, comma-separated")
	fs.DurationVar(&opts.ScaleTimeout, "scale-timeout", 3*time.Minute, "bound of one scale-out batch")
	fs.DurationVar(&opts.ScaleBudget, "scale-budget", 11*time.Minute, "no scale-out run starts that would end past this")
	fs.IntVar(&opts.PoolSize, "pool", 1, "ready VMs of the pool mode during start (0: no pool mode)")
	fs.BoolVar(&opts.NoReuse, "no-reuse", false, "leave the reuse mode (a cleaned VM of the previous run) out of the start measurements")
	fs.IntVar(&opts.IdleSandboxes, "idle", 4, "idle sandboxes per mode for the memory figures")
	fs.DurationVar(&opts.Settle, "settle", 5*time.Second, "wait before measuring idle sandboxes")
	budget := fs.Uint64("memory-budget", 16, "GiB the idle-sandbox count is computed for")
	kernelParams := fs.String("kernel-params", "", "extra guest kernel parameters of the scc modes, space-separated")
	jsonOut := fs.String("json", "", "write the report as JSON to this file")
	plotOut := fs.String("plot", "", "write a PNG (start bars, scale-out lines) to this file")
	mdOut := fs.String("markdown", "", "replace the generated figures of this markdown file")
	from := fs.String("from", "", "render the outputs from this JSON report instead of measuring")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts.MemoryBudget = *budget << 30
	opts.Phases = strings.Split(*phases, ",")
	opts.KernelParams = strings.Fields(*kernelParams)
	var err error
	if opts.ScaleN, err = parseInts(*scaleN); err != nil {
		return fmt.Errorf("bench: --scale: %w", err)
	}

	var rep *bench.Report
	if *from != "" {
		rep, err = bench.ReadJSON(*from)
	} else {
		if opts.BinDir == "" || opts.GuestDir == "" {
			return fmt.Errorf("bench: --containerd-bin and --guest are required (make bench sets them)")
		}
		rep, err = bench.Run(ctx, opts)
	}
	if err != nil {
		return err
	}
	if err := bench.WriteText(os.Stdout, rep); err != nil {
		return err
	}
	if *jsonOut != "" && *from == "" {
		if err := bench.WriteJSON(*jsonOut, rep); err != nil {
			return err
		}
	}
	if *plotOut != "" {
		if err := bench.WritePlot(*plotOut, rep); err != nil {
			return err
		}
	}
	if *mdOut != "" {
		return bench.UpdateMarkdown(*mdOut, rep, *plotOut)
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
