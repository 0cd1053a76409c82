package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/image"
)

func runGuest(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "measure" {
		return runGuestMeasure(args[1:])
	}
	if len(args) == 0 || args[0] != "build" {
		return fmt.Errorf("usage: scc guest build [--agent PATH] [--cache DIR] [--out DIR] [--kernel-package NAME]\n       scc guest measure --ovmf FILE [--guest DIR] [--vcpus N] [--vcpu-type TYPE]")
	}
	fs := flag.NewFlagSet("guest build", flag.ContinueOnError)
	var opts image.Options
	fs.StringVar(&opts.Agent, "agent", "bin/scc-agent", "the guest agent binary (static), which becomes /init")
	fs.StringVar(&opts.CacheDir, "cache", image.DefaultCacheDir, "download cache (the kernel package goes to CACHE/kernel)")
	fs.StringVar(&opts.OutputDir, "out", image.DefaultOutputDir, "where vmlinux, initrd.img and manifest.json are written")
	fs.StringVar(&opts.KernelPackage, "kernel-package", "", "kernel package to use (default: what linux-image-amd64 depends on)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	m, err := image.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("guest image in %s\n  kernel  %s  sha256:%s (%s)\n  initrd  %s  sha256:%s\n  cmdline %q  sha256:%s\n",
		opts.OutputDir, m.Kernel.Path, m.Kernel.SHA256, m.KernelRelease, m.Initrd.Path, m.Initrd.SHA256, m.Cmdline, m.CmdlineSHA256)
	return nil
}

// runGuestMeasure prints the SEV-SNP launch digest a VM booting the guest
// image with measured direct boot will have: the reference value the key
// broker's policy takes.
func runGuestMeasure(args []string) error {
	fs := flag.NewFlagSet("guest measure", flag.ContinueOnError)
	dir := fs.String("guest", image.DefaultOutputDir, "guest image directory")
	ovmf := fs.String("ovmf", "", "the SEV-SNP OVMF firmware the VM boots")
	vcpus := fs.Int("vcpus", 1, "vCPUs of the VM")
	vcpuType := fs.String("vcpu-type", "", "vCPU model (default: the launcher's, EPYC-v4)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ovmf == "" {
		return fmt.Errorf("guest measure: --ovmf is required")
	}
	m, err := image.Load(*dir)
	if err != nil {
		return err
	}
	if err := m.Verify(); err != nil {
		return err
	}
	cfg := vmm.Config{
		Kernel:  m.Kernel.Path,
		Initrd:  m.Initrd.Path,
		Cmdline: m.Cmdline,
		VCPUs:   *vcpus,
		TEE: &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: *ovmf, SNP: vmm.SNPConfig{
			Policy: vmm.DefaultSNPPolicy, KernelHashes: true, VCPUType: *vcpuType,
		}},
	}
	d, err := confidential.ExpectedSNPDigest(cfg, nil)
	if err != nil {
		return err
	}
	fmt.Printf("%x\n", d)
	return nil
}
