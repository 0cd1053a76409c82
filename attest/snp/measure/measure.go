// Package measure computes on the host the launch digest the AMD secure
// processor will report for a SEV, SEV-ES or SEV-SNP guest, so that a key
// broker's reference values come from the same firmware, kernel, initrd,
// command line and vCPU configuration the shim boots.
//
// The digest depends on exactly what the VMM hands the secure processor at
// launch, in order:
//
//   - SEV: SHA-256 over the firmware image, then the SEV hashes table when
//     a kernel is booted directly.
//   - SEV-ES: the same, followed by every vCPU's initial VMSA.
//   - SEV-SNP: a SHA-384 chain over PAGE_INFO records (gctx.go): the
//     firmware pages, the firmware's SEV metadata sections (pre-validated
//     memory, secrets and CPUID pages, the page holding the hashes table)
//     and the VMSAs.
//   - SEV-SNP with an SVSM: firmware, SVSM image, the SVSM's metadata and
//     the VMSAs that enter the SVSM.
//
// Parameter names follow virtee/sev-snp-measure so that its test vectors
// (testdata/vectors.json) map one to one.
package measure

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
)

// Mode selects the SEV generation the guest is launched with.
type Mode int

// Modes. The zero value is not a mode, so a forgotten Mode is an error.
const (
	ModeSEV Mode = iota + 1
	ModeSEVES
	ModeSNP
	// ModeSNPSVSM is SNP with a coconut SVSM running at VMPL0 below the
	// firmware.
	ModeSNPSVSM
)

func (m Mode) String() string {
	switch m {
	case ModeSEV:
		return "sev"
	case ModeSEVES:
		return "seves"
	case ModeSNP:
		return "snp"
	case ModeSNPSVSM:
		return "snp:svsm"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// ParseMode accepts the sev-snp-measure names: "sev", "seves" (or
// "sev-es"), "snp" (or "sev-snp") and "snp:svsm", in any case.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "sev":
		return ModeSEV, nil
	case "seves", "sev-es":
		return ModeSEVES, nil
	case "snp", "sev-snp":
		return ModeSNP, nil
	case "snp:svsm", "sev-snp:svsm":
		return ModeSNPSVSM, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownMode, s)
}

// VMMType is the hypervisor that sets up the guest. VMMs differ in the
// initial register state they give vCPUs and in how they measure some
// metadata pages.
type VMMType int

// VMM types. The zero value is QEMU/KVM, which is what the shim runs.
const (
	VMMQEMU VMMType = iota
	VMMEC2          // Amazon EC2
	VMMGCE          // Google Compute Engine
)

func (v VMMType) String() string {
	switch v {
	case VMMQEMU:
		return "QEMU"
	case VMMEC2:
		return "ec2"
	case VMMGCE:
		return "gce"
	default:
		return fmt.Sprintf("VMMType(%d)", int(v))
	}
}

// ParseVMMType accepts "QEMU", "ec2" and "gce", in any case.
func ParseVMMType(s string) (VMMType, error) {
	switch strings.ToLower(s) {
	case "qemu":
		return VMMQEMU, nil
	case "ec2":
		return VMMEC2, nil
	case "gce":
		return VMMGCE, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownVMMType, s)
}

// Options describe a guest launch. Firmware and SVSM images are given as
// bytes or as a path, not both.
type Options struct {
	Mode Mode

	// VCPUs is the number of vCPUs (QEMU -smp). Every vCPU's VMSA is
	// measured in SEV-ES and SNP; SEV ignores it.
	VCPUs int
	// VCPUType is the QEMU -cpu model (for example "EPYC-v4"); its CPUID
	// signature is measured in every VMSA's RDX. When empty, VCPUSig is
	// used as is, so zero is a valid signature. Setting both is allowed
	// only if they agree. EC2 and GCE load a fixed signature and ignore
	// both, but an unknown VCPUType is still an error.
	VCPUType string
	VCPUSig  uint32

	VMMType VMMType

	OVMF     []byte
	OVMFPath string

	// DirectBoot, when not nil, measures the SEV hashes table of a
	// directly booted kernel. The firmware must support it (OVMF built
	// from OvmfPkg/AmdSev).
	DirectBoot *DirectBoot

	// GuestFeatures is the SEV_FEATURES value KVM writes into the SNP
	// VMSAs: bit 0 (SNPActive) must be set; hosts that enable DebugSwap
	// (bit 5) give 0x21. SEV-ES VMSAs always carry zero and the SVSM
	// VMSAs only SNPActive, so those modes ignore it.
	GuestFeatures uint64

	// SNPOVMFHash, SNP only, is a precomputed digest of the firmware pages
	// (see SNPOVMFHash). The chain then starts from it and the firmware
	// bytes are used only for their metadata, so a verifier can ship the
	// hash and the small metadata tail instead of the whole image.
	SNPOVMFHash []byte

	// SVSM and SVSMPath give the SVSM image for ModeSNPSVSM. It is placed
	// to end OVMFVarsSize bytes below the firmware, where QEMU maps it
	// below the OVMF variable store.
	SVSM         []byte
	SVSMPath     string
	OVMFVarsSize uint64
}

// LaunchDigest returns the launch measurement of the guest opts describe:
// 32 bytes (SHA-256) for SEV and SEV-ES, 48 bytes (SHA-384) for SNP. It
// fails with an error wrapping one of the package's sentinel errors when
// the options are invalid or the firmware cannot produce such a launch.
func LaunchDigest(opts Options) ([]byte, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	vcpuSig, err := opts.vcpuSig()
	if err != nil {
		return nil, err
	}
	data, err := loadImage(opts.OVMF, opts.OVMFPath, "OVMF")
	if err != nil {
		return nil, err
	}
	fw, err := ParseOVMF(data)
	if err != nil {
		return nil, fmt.Errorf("parse OVMF: %w", err)
	}

	switch opts.Mode {
	case ModeSEV:
		return sevDigest(fw, opts.DirectBoot, nil)
	case ModeSEVES:
		eip, err := fw.SEVESResetEIP()
		if err != nil {
			return nil, err
		}
		// SEV-ES has no SEV_FEATURES: the VMSAs carry zero.
		bsp := resetVMSA(bspResetEIP, 0, vcpuSig, opts.VMMType)
		ap, err := apVMSA(opts.VCPUs, eip, 0, vcpuSig, opts.VMMType)
		if err != nil {
			return nil, err
		}
		return sevDigest(fw, opts.DirectBoot, vmsaPages(opts.VCPUs, bsp, ap))
	case ModeSNP:
		return snpDigest(fw, opts, vcpuSig)
	case ModeSNPSVSM:
		return svsmDigest(fw, opts, vcpuSig)
	}
	return nil, fmt.Errorf("%w: mode %v", ErrInvalidOptions, opts.Mode)
}

// SNPOVMFHash returns the SNP launch digest after only the firmware pages
// have been measured: the value Options.SNPOVMFHash expects.
func SNPOVMFHash(fw *OVMF) ([]byte, error) {
	g, err := newGCTX(nil)
	if err != nil {
		return nil, err
	}
	if err := g.normalPages(fw.gpa, fw.data); err != nil {
		return nil, fmt.Errorf("measure OVMF: %w", err)
	}
	return g.digest(), nil
}

func (o *Options) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	switch o.Mode {
	case ModeSEV, ModeSEVES, ModeSNP, ModeSNPSVSM:
	default:
		return bad("mode %v", o.Mode)
	}
	switch o.VMMType {
	case VMMQEMU, VMMEC2, VMMGCE:
	default:
		return fmt.Errorf("%w: %v", ErrUnknownVMMType, o.VMMType)
	}
	if o.Mode != ModeSEV && o.VCPUs < 1 {
		return bad("%d vCPUs", o.VCPUs)
	}
	if o.Mode == ModeSNP && o.GuestFeatures&sevFeatSNPActive == 0 {
		return bad("SNP guest features %#x lack SNPActive (bit 0)", o.GuestFeatures)
	}
	if o.SNPOVMFHash != nil && o.Mode != ModeSNP {
		return bad("an OVMF hash applies to SNP only, not %v", o.Mode)
	}
	if o.Mode == ModeSNPSVSM {
		if o.VMMType != VMMQEMU {
			return bad("SVSM launches are defined for QEMU only, not %v", o.VMMType)
		}
		if o.DirectBoot != nil {
			return bad("direct boot is not measured with an SVSM")
		}
		if len(o.SVSM) == 0 && o.SVSMPath == "" {
			return bad("%v needs an SVSM image", o.Mode)
		}
	} else if len(o.SVSM) != 0 || o.SVSMPath != "" || o.OVMFVarsSize != 0 {
		return bad("SVSM options given in %v mode", o.Mode)
	}
	return nil
}

// vcpuSig resolves VCPUType and VCPUSig to the signature measured in RDX.
func (o *Options) vcpuSig() (uint32, error) {
	if o.VCPUType == "" {
		return o.VCPUSig, nil
	}
	sig, err := VCPUSignature(o.VCPUType)
	if err != nil {
		return 0, err
	}
	if o.VCPUSig != 0 && o.VCPUSig != sig {
		return 0, fmt.Errorf("%w: vCPU signature %#x contradicts %s (%#x)", ErrInvalidOptions, o.VCPUSig, o.VCPUType, sig)
	}
	return sig, nil
}

// loadImage returns data, or reads path.
func loadImage(data []byte, path, what string) ([]byte, error) {
	switch {
	case len(data) != 0 && path != "":
		return nil, fmt.Errorf("%w: both %s bytes and %s path given", ErrInvalidOptions, what, what)
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		return b, nil
	case len(data) != 0:
		return data, nil
	}
	return nil, fmt.Errorf("%w: no %s image", ErrInvalidOptions, what)
}

// apVMSA builds the VMSA shared by the application processors, which start
// at the firmware's SEV-ES reset block. It is nil with a single vCPU.
func apVMSA(vcpus int, eip uint32, sevFeatures uint64, vcpuSig uint32, vmm VMMType) (*vmsa, error) {
	if vcpus < 2 {
		return nil, nil
	}
	if eip == 0 {
		return nil, fmt.Errorf("%w: SEV-ES reset block has no AP entry point", ErrMissingMetadata)
	}
	return resetVMSA(eip, sevFeatures, vcpuSig, vmm), nil
}

// sevDigest measures SEV and SEV-ES launches: LAUNCH_UPDATE_DATA of the
// firmware (and hashes table), then LAUNCH_UPDATE_VMSA of each vCPU.
func sevDigest(fw *OVMF, db *DirectBoot, vmsas []*vmsa) ([]byte, error) {
	h := sha256.New()
	h.Write(fw.data)
	if db != nil {
		if _, ok, err := fw.SEVHashesTableGPA(); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%w: no SEV hashes table address", ErrKernelHashesUnsupported)
		}
		table, err := sevHashesTable(db)
		if err != nil {
			return nil, err
		}
		h.Write(table)
	}
	for _, v := range vmsas {
		h.Write(v[:])
	}
	return h.Sum(nil), nil
}

// snpDigest measures an SNP launch as QEMU performs it: the firmware
// pages, the metadata sections in firmware order, then the VMSAs.
func snpDigest(fw *OVMF, opts Options, vcpuSig uint32) ([]byte, error) {
	var hashesPage []byte
	if opts.DirectBoot != nil {
		// Checked before anything is hashed: such firmware would accept
		// any kernel, so there is no meaningful digest to give.
		if !fw.hasSection(SectionSNPKernelHashes) {
			return nil, fmt.Errorf("%w: no SNP_KERNEL_HASHES metadata section", ErrKernelHashesUnsupported)
		}
		gpa, ok, err := fw.SEVHashesTableGPA()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: no SEV hashes table address", ErrKernelHashesUnsupported)
		}
		table, err := sevHashesTable(opts.DirectBoot)
		if err != nil {
			return nil, err
		}
		if hashesPage, err = sevHashesPage(table, gpa&(pageSize-1)); err != nil {
			return nil, err
		}
	}
	eip, err := fw.SEVESResetEIP()
	if err != nil {
		return nil, err
	}
	ap, err := apVMSA(opts.VCPUs, eip, opts.GuestFeatures, vcpuSig, opts.VMMType)
	if err != nil {
		return nil, err
	}

	g, err := newGCTX(opts.SNPOVMFHash)
	if err != nil {
		return nil, err
	}
	if opts.SNPOVMFHash == nil {
		if err := g.normalPages(fw.gpa, fw.data); err != nil {
			return nil, fmt.Errorf("measure OVMF: %w", err)
		}
	}
	if err := measureSections(g, fw, hashesPage, opts.VMMType); err != nil {
		return nil, err
	}
	bsp := resetVMSA(bspResetEIP, opts.GuestFeatures, vcpuSig, opts.VMMType)
	for _, v := range vmsaPages(opts.VCPUs, bsp, ap) {
		g.vmsaPage(v)
	}
	return g.digest(), nil
}

// svsmDigest measures an SNP launch in which QEMU loads a coconut SVSM
// below the firmware: both images as normal pages, then the SVSM's (not
// the firmware's) metadata sections, then one VMSA per vCPU, each entering
// the SVSM.
func svsmDigest(fw *OVMF, opts Options, vcpuSig uint32) ([]byte, error) {
	data, err := loadImage(opts.SVSM, opts.SVSMPath, "SVSM")
	if err != nil {
		return nil, err
	}
	if opts.OVMFVarsSize > fw.gpa {
		return nil, fmt.Errorf("%w: OVMF variable store of %#x bytes does not fit below the firmware", ErrInvalidOptions, opts.OVMFVarsSize)
	}
	svsm, err := parseImage(data, fw.gpa-opts.OVMFVarsSize)
	if err != nil {
		return nil, fmt.Errorf("parse SVSM: %w", err)
	}
	eip, err := svsm.svsmResetEIP()
	if err != nil {
		return nil, err
	}

	g, err := newGCTX(nil)
	if err != nil {
		return nil, err
	}
	if err := g.normalPages(fw.gpa, fw.data); err != nil {
		return nil, fmt.Errorf("measure OVMF: %w", err)
	}
	if err := g.normalPages(svsm.gpa, svsm.data); err != nil {
		return nil, fmt.Errorf("measure SVSM: %w", err)
	}
	if err := measureSections(g, svsm, nil, VMMQEMU); err != nil {
		return nil, err
	}
	v := svsmVMSA(eip, vcpuSig)
	for range opts.VCPUs {
		g.vmsaPage(v)
	}
	return g.digest(), nil
}

// measureSections feeds the firmware's SEV metadata sections to the chain
// the way the VMM does. hashesPage is the page holding the SEV hashes
// table, or nil without direct boot (the section is then zero pages).
func measureSections(g *gctx, fw *OVMF, hashesPage []byte, vmm VMMType) error {
	for _, s := range fw.sections {
		gpa, size := uint64(s.GPA), uint64(s.Size)
		var err error
		switch s.Type {
		case SectionSNPSecMem:
			// GCE leaves this memory for the guest to validate rather
			// than having the secure processor zero it.
			if vmm == VMMGCE {
				err = g.emptyPages(pageTypeUnmeasured, gpa, size)
			} else {
				err = g.emptyPages(pageTypeZero, gpa, size)
			}
		case SectionSNPSecrets:
			g.secretsPage(gpa)
		case SectionCPUID:
			// EC2 inserts the CPUID page after all other sections.
			if vmm != VMMEC2 {
				g.cpuidPage(gpa)
			}
		case SectionSVSMCAA:
			err = g.emptyPages(pageTypeZero, gpa, size)
		case SectionSNPKernelHashes:
			if hashesPage == nil {
				err = g.emptyPages(pageTypeZero, gpa, size)
				break
			}
			if size != pageSize {
				return fmt.Errorf("%w: SNP_KERNEL_HASHES section is %#x bytes, want one page", ErrMalformedOVMF, size)
			}
			err = g.normalPages(gpa, hashesPage)
		default:
			return fmt.Errorf("%w: unknown SEV metadata section type %v", ErrMalformedOVMF, s.Type)
		}
		if err != nil {
			return err
		}
	}
	if vmm == VMMEC2 {
		for _, s := range fw.sections {
			if s.Type == SectionCPUID {
				g.cpuidPage(uint64(s.GPA))
			}
		}
	}
	return nil
}
