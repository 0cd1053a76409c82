package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/sccontainers/scc/attest/policy"
	"github.com/sccontainers/scc/attest/tdx/measure"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/image"
)

const guestMeasureUsage = `scc guest measure [--tee snp] --firmware OVMF [--guest DIR] [--vcpus N] [--vcpu-type TYPE]
       scc guest measure --tee tdx --firmware TDVF [--guest DIR] [--page-order per-page|adds-first] [--initrd-arg suffix|prefix] [--mr-config-id HEX]`

// guestMeasure prints the launch measurements a VM booting the guest image
// through the given firmware will have: the reference values the key
// broker's policy takes. For snp it prints the launch digest (MEASUREMENT);
// for tdx the policy's reference values as JSON ({"mrtd", "rtmrs",
// "mr_config_id"}), ready for a workload's "tdx" entry.
func guestMeasure(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("guest measure", flag.ContinueOnError)
	dir := fs.String("guest", image.DefaultOutputDir, "guest image directory")
	tee := fs.String("tee", string(vmm.TEESNP), "TEE of the VM: snp or tdx")
	firmware := fs.String("firmware", "", "the firmware the VM boots: OVMF built for SEV-SNP (snp), TDVF (tdx)")
	fs.StringVar(firmware, "ovmf", "", "same as --firmware")
	vcpus := fs.Int("vcpus", 1, "snp: vCPUs of the VM")
	vcpuType := fs.String("vcpu-type", "", "snp: vCPU model (default: the launcher's, EPYC-v4)")
	pageOrder := fs.String("page-order", "per-page", "tdx: how the host kernel adds the firmware's pages: per-page (Linux 6.16 and later) or adds-first (earlier TDX kernels)")
	initrdArg := fs.String("initrd-arg", "suffix", "tdx: where the firmware puts initrd=initrd in the kernel's load options: suffix (edk2 up to stable202505) or prefix (later edk2)")
	mrConfigID := fs.String("mr-config-id", "", "tdx: MRCONFIGID of the launch, 96 hex digits (the init data digest); empty leaves it out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *firmware == "" {
		return fmt.Errorf("guest measure: --firmware is required")
	}
	only := map[string]vmm.TEEType{"vcpus": vmm.TEESNP, "vcpu-type": vmm.TEESNP, "page-order": vmm.TEETDX, "initrd-arg": vmm.TEETDX, "mr-config-id": vmm.TEETDX}
	var misused error
	fs.Visit(func(f *flag.Flag) {
		if t, ok := only[f.Name]; ok && string(t) != *tee && misused == nil {
			misused = fmt.Errorf("guest measure: --%s applies to --tee %s only", f.Name, t)
		}
	})
	if misused != nil {
		return misused
	}
	m, err := image.Load(*dir)
	if err != nil {
		return err
	}
	if err := m.Verify(); err != nil {
		return err
	}
	// The launch configuration, then the image's files as a launch of it
	// gets them: the EFI kernel (vmlinuz) that the firmware starts and
	// QEMU hashes, never the PVH vmlinux ordinary VMs boot.
	cfg := vmm.Config{VCPUs: *vcpus}
	switch vmm.TEEType(*tee) {
	case vmm.TEESNP:
		cfg.TEE = &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: *firmware, SNP: vmm.SNPConfig{
			Policy: vmm.DefaultSNPPolicy, KernelHashes: true, VCPUType: *vcpuType,
		}}
	case vmm.TEETDX:
		cfg.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: *firmware}
	default:
		return fmt.Errorf("guest measure: --tee %q: want %s or %s", *tee, vmm.TEESNP, vmm.TEETDX)
	}
	if err := m.Configure(&cfg); err != nil {
		return fmt.Errorf("guest measure: %w", err)
	}
	if cfg.TEE.Type == vmm.TEESNP {
		d, err := confidential.ExpectedSNPDigest(cfg, nil)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%x\n", d)
		return err
	}
	var host confidential.TDXHost
	switch *pageOrder {
	case "per-page":
		host.PageOrder = measure.OrderPerPage
	case "adds-first":
		host.PageOrder = measure.OrderAddsFirst
	default:
		return fmt.Errorf("guest measure: --page-order %q: want per-page or adds-first", *pageOrder)
	}
	switch *initrdArg {
	case "suffix":
		host.InitrdArg = measure.InitrdArgSuffix
	case "prefix":
		host.InitrdArg = measure.InitrdArgPrefix
	default:
		return fmt.Errorf("guest measure: --initrd-arg %q: want suffix or prefix", *initrdArg)
	}
	if *mrConfigID != "" {
		b, err := hex.DecodeString(*mrConfigID)
		if err != nil || len(b) != len(cfg.TEE.TDX.MRConfigID) {
			return fmt.Errorf("guest measure: --mr-config-id must be %d hex digits", 2*len(cfg.TEE.TDX.MRConfigID))
		}
		copy(cfg.TEE.TDX.MRConfigID[:], b)
	}
	tm, err := confidential.ExpectedTDXMeasurements(cfg, nil, host)
	if err != nil {
		return err
	}
	ref := policy.Reference{
		MRTD:  []string{hex.EncodeToString(tm.MRTD)},
		RTMRs: map[string][]string{"2": {hex.EncodeToString(tm.RTMR2)}},
	}
	if *mrConfigID != "" {
		ref.MRConfigID = hex.EncodeToString(tm.MRConfigID)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(ref)
}
