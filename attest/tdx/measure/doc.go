// Package measure computes on the host the Intel TDX measurement registers
// a trust domain launched by QEMU from a TDVF firmware image will report,
// so that a key broker's reference values come from the same firmware,
// kernel, initrd and command line the shim boots.
//
//   - MRTD, the build-time measurement, depends on the TDVF file alone.
//     QEMU reads the firmware's TDX metadata (ParseTDVF) and hands each
//     section to KVM, which adds its pages with TDH.MEM.PAGE.ADD and, for
//     sections marked MR.EXTEND, measures their content with
//     TDH.MR.EXTEND. The TDX module folds a 128-byte record of each call
//     (and the extended content) into one SHA-384 (TDVF.MRTD).
//   - RTMR[2] holds, when a Linux kernel with confidential-computing
//     measurement support (the EFI stub of Linux 6.9 and later) is booted
//     directly, the kernel's load options as TDVF built them from QEMU's
//     command line and the initrd (DirectBootRTMR2).
//   - RTMR[0] (TD HOB, ACPI tables QEMU generates, firmware configuration)
//     and RTMR[1] (the kernel image, whose setup header QEMU 10.1 patches
//     and later versions leave as given, and the firmware's boot events)
//     depend on QEMU's memory layout and version and are not computed here; a verifier replays them from the
//     guest's CC event log (ReplayRTMR).
//
// The TDX module's record layouts are those of the Intel TDX Module Base
// Architecture Specification (TDH.MEM.PAGE.ADD, TDH.MR.EXTEND); the TDVF
// metadata is that of the Intel TDX Virtual Firmware Design Guide, as
// edk2's OvmfPkg emits it and QEMU's hw/i386/tdvf.c reads it.
package measure
