package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/sccontainers/scc/vmm/image"
)

func runGuest(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "measure" {
		return guestMeasure(args[1:], os.Stdout)
	}
	if len(args) == 0 || args[0] != "build" {
		return fmt.Errorf("usage: scc guest build [--agent PATH] [--cache DIR] [--out DIR] [--kernel-package NAME]\n       " + guestMeasureUsage)
	}
	fs := flag.NewFlagSet("guest build", flag.ContinueOnError)
	var opts image.Options
	fs.StringVar(&opts.Agent, "agent", "bin/scc-agent", "the guest agent binary (static), which becomes /init")
	fs.StringVar(&opts.CacheDir, "cache", image.DefaultCacheDir, "download cache (the kernel package goes to CACHE/kernel)")
	fs.StringVar(&opts.OutputDir, "out", image.DefaultOutputDir, "where vmlinux, vmlinuz, initrd.img and manifest.json are written")
	fs.StringVar(&opts.KernelPackage, "kernel-package", "", "kernel package to use (default: what linux-image-amd64 depends on)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	m, err := image.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("guest image in %s\n  kernel  %s  sha256:%s (%s)\n  efi     %s  sha256:%s (for UEFI firmware and confidential VMs)\n  initrd  %s  sha256:%s\n  cmdline %q  sha256:%s\n",
		opts.OutputDir, m.Kernel.Path, m.Kernel.SHA256, m.KernelRelease, m.EFIKernel.Path, m.EFIKernel.SHA256, m.Initrd.Path, m.Initrd.SHA256, m.Cmdline, m.CmdlineSHA256)
	return nil
}
