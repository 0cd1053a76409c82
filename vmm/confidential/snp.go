package confidential

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sccontainers/scc/attest/snp/measure"
	"github.com/sccontainers/scc/vmm"
)

// ErrNotMeasurable means the launch digest of a configuration cannot be
// computed on the host.
var ErrNotMeasurable = errors.New("launch digest cannot be computed")

// ErrIDBlockMismatch means the configuration's ID block signs a launch
// digest other than the one the VM will have: the secure processor would
// refuse the launch.
var ErrIDBlockMismatch = errors.New("id block does not match the launch digest")

// checkKernel fails for a kernel that a confidential VM's firmware cannot
// start, whose launch measurement would describe no launch: QEMU loads a
// PVH vmlinux into memory itself and puts no SEV kernel hashes in the
// firmware for it, and OVMF and TDVF start only a bzImage with an EFI
// stub. Files of no known kernel format pass, so that the published
// known-answer vectors, whose kernels are stand-in bytes, can be replayed.
func checkKernel(path string) error {
	f, err := vmm.ReadKernelFormat(path)
	if err != nil {
		return err
	}
	if f == vmm.KernelPVH || f == vmm.KernelBzImage {
		return fmt.Errorf("%w: %w: kernel %s is a %s kernel, which a confidential VM's UEFI firmware cannot start: measure the bzImage with an EFI stub it boots (the guest image's vmlinuz)",
			ErrNotMeasurable, vmm.ErrKernelFormat, path, f)
	}
	return nil
}

// ExpectedSNPDigest returns the SEV-SNP launch digest (MEASUREMENT, 48
// bytes) of the VM cfg describes when QEMU launches it: the OVMF image, the
// SEV hashes table of cfg's kernel, initrd and command line (kernel-hashes),
// then one VMSA per vCPU of cfg's vCPU model with cfg's SEV features. A key
// broker's reference value computed from it holds for exactly the guest
// image the shim boots. cfg.Kernel must be the file QEMU is given, the
// bzImage with an EFI stub (image.Manifest.Configure picks it); a PVH
// vmlinux fails with ErrNotMeasurable and vmm.ErrKernelFormat.
//
// ovmf is the firmware image; when nil, the file cfg.TEE.Firmware names is
// read. Defaults are applied to cfg first, as a driver does. When cfg
// carries an ID block, the digest it signs must be the one computed, or the
// error wraps ErrIDBlockMismatch.
func ExpectedSNPDigest(cfg vmm.Config, ovmf []byte) ([]byte, error) {
	cfg = cfg.WithDefaults()
	tee := cfg.TEE
	if tee == nil || tee.Type != vmm.TEESNP {
		return nil, fmt.Errorf("expected snp digest: %w: vm is not an SEV-SNP guest", ErrNotMeasurable)
	}
	s := tee.SNP
	if s.IGVM != "" {
		// The IGVM file's own directives decide what is measured; that
		// needs an IGVM measurement tool, not an OVMF one.
		return nil, fmt.Errorf("expected snp digest: %w: launches from an IGVM file are measured by its directives, which this package does not interpret", ErrNotMeasurable)
	}
	opts := measure.Options{
		Mode:          measure.ModeSNP,
		VCPUs:         cfg.VCPUs,
		VCPUType:      s.VCPUType,
		VMMType:       measure.VMMQEMU,
		OVMF:          ovmf,
		GuestFeatures: s.GuestFeatures,
	}
	if len(ovmf) == 0 {
		opts.OVMFPath = tee.Firmware
	}
	if s.KernelHashes {
		if err := checkKernel(cfg.Kernel); err != nil {
			return nil, fmt.Errorf("expected snp digest: %w", err)
		}
		// An absent initrd is measured as the hash of zero bytes, which
		// is what an empty DirectBoot.Initrd gives.
		opts.DirectBoot = &measure.DirectBoot{
			KernelPath: cfg.Kernel,
			InitrdPath: cfg.Initrd,
			Cmdline:    cfg.Cmdline,
		}
	}
	digest, err := measure.LaunchDigest(opts)
	if err != nil {
		return nil, fmt.Errorf("expected snp digest: %w", err)
	}
	if s.IDBlock != "" {
		block, err := base64.StdEncoding.DecodeString(s.IDBlock)
		if err != nil || len(block) != vmm.SNPIDBlockSize {
			return nil, fmt.Errorf("expected snp digest: id block is not %d bytes of base64", vmm.SNPIDBlockSize)
		}
		if signed := vmm.SNPIDBlockDigest(block); subtle.ConstantTimeCompare(signed, digest) != 1 {
			return nil, fmt.Errorf("expected snp digest: %w: it signs %s, the VM measures %s",
				ErrIDBlockMismatch, hex.EncodeToString(signed), hex.EncodeToString(digest))
		}
	}
	return digest, nil
}
