// Package confidential holds what the host needs to launch a VM as a
// confidential guest, whatever VMM runs it: what the host CPU offers
// (HostSEV) and the launch measurement a configuration will produce
// (ExpectedSNPDigest), so the key broker's reference values come from the
// same files the shim boots.
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
// memory) and four runtime registers RTMR0-3:
//
//   - MRTD is a SHA-384 chain over TDH.MEM.PAGE.ADD and TDH.MR.EXTEND of
//     the TDVF sections its TDX metadata (the footer GUID table entry
//     e47a6535-984a-4798-865e-4685a7bf8ec2) marks as measured; it depends
//     only on the TDVF file and can in principle be computed on the host.
//     It is not computed here yet: without reference TDVF images and their
//     measured MRTD there is nothing to check an implementation against.
//   - RTMR0 holds TDVF's measurements of its configuration (TD HOB, ACPI
//     tables QEMU generates, which depend on vCPUs, memory and devices),
//     RTMR1 the kernel, initrd and their loader, RTMR2 the command line as
//     the guest kernel measured it. They are replayed from the firmware's
//     CC event log, which exists only once the guest has booted: the
//     verifier checks the event log against the RTMRs, then the log's
//     kernel, initrd and command line digests against reference values
//     (SHA-384 of the same files the shim boots).
//   - MRCONFIGID carries the init data digest (TDXConfig.MRConfigID),
//     like HOST_DATA for SNP.
package confidential
