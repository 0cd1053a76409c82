package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sccontainers/scc/internal/bench"
)

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	opts := bench.Options{Progress: os.Stderr}
	self, _ := os.Executable()
	fs.IntVar(&opts.Runs, "runs", 5, "measured runs per runtime")
	fs.StringVar(&opts.Dir, "dir", "/tmp/scc-bench", "scratch directory (removed afterwards)")
	fs.StringVar(&opts.BinDir, "containerd-bin", os.Getenv("CONTAINERD_BIN"), "directory with containerd, ctr and containerd-shim-runc-v2")
	fs.StringVar(&opts.ShimDir, "shim-dir", filepath.Dir(self), "directory with containerd-shim-scc-v2")
	fs.StringVar(&opts.GuestDir, "guest", os.Getenv("GUEST_DIR"), "guest image directory")
	fs.StringVar(&opts.Busybox, "busybox", "/bin/busybox", "static busybox for the test image")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opts.BinDir == "" || opts.GuestDir == "" {
		return fmt.Errorf("bench: --containerd-bin and --guest are required (make bench sets them)")
	}
	fmt.Fprintf(os.Stderr, "cold start: ctr run --rm <busybox> /bin/true, %d runs per runtime, alternating\n", opts.Runs)
	res, err := bench.ColdStart(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("machine: %s/%s, %d CPUs; VMs: %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), accelDescription())
	bench.Report(os.Stdout, "cold start (ctr run --rm, /bin/true)", res)
	return nil
}
