// Package confidential holds what the host needs to launch a VM as a
// confidential guest, whatever VMM runs it: what the host CPU offers
// (HostSEV) and the launch measurements a configuration will produce
// (ExpectedSNPDigest, ExpectedTDXMeasurements), so the key broker's
// reference values come from the same files the shim boots.
//
// # SEV-SNP
//
// The whole launch digest is computable on the host: ExpectedSNPDigest
// replays what QEMU hands the secure processor (firmware pages, SEV
// metadata sections with the kernel hashes table, VMSAs) through
// attest/snp/measure. Two inputs are not on QEMU's command line and must
// match the host: the vCPU model's CPUID signature (the config pins a named
// model, EPYC-v4 by default, instead of "host") and the SEV_FEATURES KVM
// writes into the VMSAs (SNPConfig.GuestFeatures: 0x1 with upstream QEMU
// 9.1+ and KVM_SEV_INIT2; 0x21 on older stacks that enable DebugSwap).
// HOST_DATA is not part of the digest; the report carries it separately.
// Launches from an IGVM file are measured by the file's own directives and
// are not computed here.
//
// # TDX
//
// A TD's quote carries MRTD (the build-time measurement of the initial
// memory), four runtime registers RTMR0-3 and MRCONFIGID.
// ExpectedTDXMeasurements computes what of them the host can, through
// attest/tdx/measure:
//
//   - MRTD: QEMU reads the TDVF's TDX metadata (the footer GUID table
//     entry e47a6535-984a-4798-865e-4685a7bf8ec2 locates the "TDVF"
//     descriptor) and hands each section to KVM, which adds its pages
//     (TDH.MEM.PAGE.ADD) and measures the content of sections marked
//     MR.EXTEND (TDH.MR.EXTEND); MRTD depends on the TDVF file alone, plus
//     the order the host kernel issues the calls in (TDXHost.PageOrder:
//     page by page on upstream Linux 6.16+, all adds first on the earlier
//     TDX trees).
//   - RTMR2: a kernel booted directly whose EFI stub measures into TDX
//     RTMRs (Linux 6.9+) extends it with its load options (QEMU's command
//     line plus the firmware's "initrd=initrd" argument, as UTF-16) and
//     the initrd. Older kernels leave it zero.
//   - MRCONFIGID carries the init data digest (TDXConfig.MRConfigID),
//     like HOST_DATA for SNP.
//
// RTMR0 (TD HOB, ACPI tables QEMU generates from vCPUs, memory and
// devices, the firmware's configuration) and RTMR1 (the kernel image,
// whose setup header QEMU 10.1 patches with memory-layout-dependent
// addresses and QEMU 10.2 and later leave as given, and the firmware's
// boot events) are not computed: a verifier replays them from the
// firmware's CC event log, which exists only once the guest has booted,
// and checks the log's events against reference values.
//
// # The kernel
//
// Both TEEs boot the kernel through their UEFI firmware, which starts only
// a bzImage with an EFI stub: the guest image's vmlinuz
// (image.Manifest.Configure gives a confidential VM that one). The
// measurement functions read the kernel from cfg.Kernel, the file QEMU is
// given, and refuse a PVH vmlinux, which no confidential launch can boot.
package confidential
