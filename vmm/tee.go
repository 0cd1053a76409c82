package vmm

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// TEEType names the trusted execution environment a VM is launched in.
type TEEType string

const (
	TEENone TEEType = "none" // an ordinary VM; the host can read its memory
	TEESNP  TEEType = "snp"  // AMD SEV-SNP
	TEETDX  TEEType = "tdx"  // Intel TDX
)

// SEV-SNP guest policy bits (SEV Secure Nested Paging Firmware ABI, "Guest
// Policy").
const (
	SNPPolicySMT          uint64 = 1 << 16               // SMT may be enabled on the host
	SNPPolicyReserved1    uint64 = 1 << 17               // reserved, must be 1
	SNPPolicyMigrateMA    uint64 = 1 << 18               // a migration agent may be bound
	SNPPolicyDebug        uint64 = 1 << 19               // the host may debug (decrypt) the guest
	SNPPolicySingleSocket uint64 = 1 << 20               // the guest may run on one socket only
	snpPolicyMBZ          uint64 = 0xffff_ffff_fc00_0000 // bits 63:26 are reserved

	// DefaultSNPPolicy allows SMT and nothing else: no debugging, no
	// migration agent, any ABI version.
	DefaultSNPPolicy = SNPPolicySMT | SNPPolicyReserved1
)

// SEV features written into an SNP guest's VMSAs (AMD APM vol. 2, "VMSA
// SEV_FEATURES").
const (
	SEVFeatureSNPActive uint64 = 1 << 0
	SEVFeatureDebugSwap uint64 = 1 << 5
)

// Sizes of the SNP launch blobs QEMU passes to SNP_LAUNCH_FINISH.
const (
	SNPIDBlockSize = 96   // ID_BLOCK
	SNPIDAuthSize  = 4096 // ID_AUTH_INFO
)

// DefaultSNPVCPUType is the vCPU model an SNP guest runs with unless told
// otherwise. A named model rather than "host" keeps the CPUID signature,
// which is part of the launch digest, the same on every host.
const DefaultSNPVCPUType = "EPYC-v4"

// TEEConfig launches a VM as a confidential guest. The guest boots through
// the TEE's measured firmware instead of Config.Firmware.
type TEEConfig struct {
	Type TEEType // TEENone when empty

	// Firmware is the measured firmware image: OVMF built with SEV support
	// (OvmfPkg/AmdSev, which also verifies a directly booted kernel) for
	// SNP, TDVF (OVMF built for TDX) for TDX. When empty, Config.Firmware is
	// used. SNP may name an IGVM file in SNP.IGVM instead.
	Firmware string

	SNP SNPConfig
	TDX TDXConfig
}

// SNPConfig are the SEV-SNP launch parameters.
type SNPConfig struct {
	// Policy is the guest policy the secure processor enforces and reports;
	// DefaultSNPPolicy when zero. Debug and migration-agent policies are
	// refused: either lets the host read the guest.
	Policy uint64
	// HostData is reported verbatim in every attestation report
	// (HOST_DATA): the digest of the pod's init data, which binds it to the
	// launch.
	HostData [32]byte
	// IDBlock and IDAuth (base64, as QEMU takes them) sign the expected
	// launch digest and policy; the secure processor refuses a launch that
	// does not match. Both or neither.
	IDBlock string
	IDAuth  string
	// KernelHashes has QEMU put the SHA-256 of the kernel, initrd and
	// command line into the firmware's measured SEV hashes table
	// (kernel-hashes=on), so the launch digest covers them and the firmware
	// refuses others. Required with an OVMF firmware: without it the
	// directly booted kernel would not be attested.
	KernelHashes bool
	// IGVM is an IGVM file to launch instead of Firmware (QEMU 10.1 or
	// newer, or cloud-hypervisor).
	IGVM string
	// VCPUType is the QEMU vCPU model; DefaultSNPVCPUType when empty. Its
	// CPUID signature is measured.
	VCPUType string
	// GuestFeatures is the SEV_FEATURES value KVM writes into every VMSA,
	// which is measured. Zero means SEVFeatureSNPActive alone, which is what
	// upstream QEMU (9.1 and later, through KVM_SEV_INIT2) asks for; hosts
	// whose KVM enables DebugSwap for SNP guests give 0x21.
	GuestFeatures uint64
	// CBitPos and ReducedPhysBits describe the host's memory encryption
	// (CPUID Fn8000_001F EBX). Zero means the driver reads them from the
	// host CPU.
	CBitPos         uint8
	ReducedPhysBits uint8
}

// TDXConfig are the Intel TDX launch parameters.
type TDXConfig struct {
	// MRConfigID is reported verbatim in every TD quote (MRCONFIGID): the
	// digest of the pod's init data.
	MRConfigID [48]byte
	// QuoteGenerationSocket is where the host's quote generation service
	// listens, "vsock:<cid>:<port>" or "unix:<path>"; empty when the guest
	// gets its quotes another way.
	QuoteGenerationSocket string
}

// Confidential reports whether c launches a confidential guest.
func (c *TEEConfig) Confidential() bool {
	return c != nil && c.Type != "" && c.Type != TEENone
}

// withDefaults returns a copy of t with zero fields set; firmware is the
// VM's Config.Firmware, used when t names none.
func (t *TEEConfig) withDefaults(firmware string) *TEEConfig {
	if t == nil {
		return nil
	}
	c := *t
	if c.Type == "" {
		c.Type = TEENone
	}
	if !c.Confidential() {
		return &c
	}
	if c.Firmware == "" && !(c.Type == TEESNP && c.SNP.IGVM != "") {
		c.Firmware = firmware
	}
	if c.Type == TEESNP {
		if c.SNP.Policy == 0 {
			c.SNP.Policy = DefaultSNPPolicy
		}
		if c.SNP.VCPUType == "" {
			c.SNP.VCPUType = DefaultSNPVCPUType
		}
		if c.SNP.GuestFeatures == 0 {
			c.SNP.GuestFeatures = SEVFeatureSNPActive
		}
	}
	return &c
}

// validate appends t's problems to errs; c is the VM's Config.
func (t *TEEConfig) validate(errs *[]error, c Config) {
	if t == nil {
		return
	}
	bad := func(format string, args ...any) { *errs = append(*errs, fmt.Errorf("tee: "+format, args...)) }
	switch t.Type {
	case TEENone, "":
		return
	case TEESNP, TEETDX:
	default:
		bad("type %q: want %q, %q or %q", t.Type, TEENone, TEESNP, TEETDX)
		return
	}
	if c.Accel == AccelTCG {
		bad("%s needs hardware virtualisation: accel must be %q or %q, not %q", t.Type, AccelKVM, AccelAuto, c.Accel)
	}
	if c.Firmware != "" && t.Firmware != "" && c.Firmware != t.Firmware {
		bad("firmware %q differs from the TEE firmware %q: a confidential VM boots only its measured firmware", c.Firmware, t.Firmware)
	}

	if t.Type == TEESNP {
		t.validateSNP(errs, c)
		return
	}
	checkFile(errs, "tee: tdx firmware (TDVF)", t.Firmware, true)
	if t.Firmware == DefaultFirmware {
		bad("tdx firmware %s is qboot, which cannot start a TD: use TDVF", t.Firmware)
	}
	if t.TDX.QuoteGenerationSocket != "" {
		if _, err := ParseQGSAddress(t.TDX.QuoteGenerationSocket); err != nil {
			bad("tdx: %w", err)
		}
	}
	if t.SNP != (SNPConfig{}) {
		bad("tdx VM has SEV-SNP settings")
	}
}

func (t *TEEConfig) validateSNP(errs *[]error, c Config) {
	bad := func(format string, args ...any) { *errs = append(*errs, fmt.Errorf("tee: snp: "+format, args...)) }
	s := t.SNP

	switch {
	case s.IGVM != "" && t.Firmware != "":
		bad("both firmware %q and IGVM file %q given: want one", t.Firmware, s.IGVM)
	case s.IGVM != "":
		checkFile(errs, "tee: snp IGVM file", s.IGVM, true)
	default:
		checkFile(errs, "tee: snp firmware (OVMF)", t.Firmware, true)
		if t.Firmware == DefaultFirmware {
			bad("firmware %s is qboot, which cannot start an SNP guest: use OVMF built with SEV support (OvmfPkg/AmdSev)", t.Firmware)
		}
		if !s.KernelHashes {
			bad("kernel-hashes is off: the directly booted kernel, initrd and command line would not be measured, so attestation would not cover them")
		}
	}

	if err := CheckSNPPolicy(s.Policy); err != nil {
		bad("%w", err)
	}
	if s.GuestFeatures&SEVFeatureSNPActive == 0 {
		bad("guest features %#x lack SNPActive (bit 0)", s.GuestFeatures)
	}
	if !namePattern.MatchString(s.VCPUType) {
		bad("vcpu type %q: want a QEMU CPU model name such as %s", s.VCPUType, DefaultSNPVCPUType)
	}
	if (s.CBitPos == 0) != (s.ReducedPhysBits == 0) {
		bad("cbitpos %d and reduced-phys-bits %d: give both or neither", s.CBitPos, s.ReducedPhysBits)
	}
	if s.CBitPos > 63 || s.ReducedPhysBits > 63 {
		bad("cbitpos %d, reduced-phys-bits %d: CPUID gives 6-bit values", s.CBitPos, s.ReducedPhysBits)
	}

	switch {
	case s.IDBlock == "" && s.IDAuth == "":
	case s.IDBlock == "" || s.IDAuth == "":
		bad("id-block and id-auth go together: give both or neither")
	default:
		block, err := decodeBlob("id-block", s.IDBlock, SNPIDBlockSize)
		if err != nil {
			bad("%w", err)
		} else if p := SNPIDBlockPolicy(block); p != s.Policy {
			bad("id-block signs policy %#x but the launch policy is %#x: the secure processor would refuse the launch", p, s.Policy)
		}
		if _, err := decodeBlob("id-auth", s.IDAuth, SNPIDAuthSize); err != nil {
			bad("%w", err)
		}
	}
	if t.TDX != (TDXConfig{}) {
		bad("snp VM has TDX settings")
	}
}

// CheckSNPPolicy rejects guest policies the secure processor would refuse
// (reserved bits) and those that give the host access to the guest's
// memory (debug, migration agent).
func CheckSNPPolicy(p uint64) error {
	var errs []error
	if p&SNPPolicyReserved1 == 0 {
		errs = append(errs, fmt.Errorf("policy %#x: reserved bit 17 must be set", p))
	}
	if p&snpPolicyMBZ != 0 {
		errs = append(errs, fmt.Errorf("policy %#x: bits 63:26 are reserved and must be zero", p))
	}
	if p&SNPPolicyDebug != 0 {
		errs = append(errs, fmt.Errorf("policy %#x allows debugging: the host could decrypt the guest", p))
	}
	if p&SNPPolicyMigrateMA != 0 {
		errs = append(errs, fmt.Errorf("policy %#x allows a migration agent: the guest's memory could be exported", p))
	}
	return errors.Join(errs...)
}

// SNPIDBlockPolicy is the guest policy an ID block signs (bytes 0x58-0x5f).
func SNPIDBlockPolicy(block []byte) uint64 {
	return binary.LittleEndian.Uint64(block[0x58:0x60])
}

// SNPIDBlockDigest is the launch digest an ID block signs (bytes 0-0x2f).
func SNPIDBlockDigest(block []byte) []byte { return block[:48] }

func decodeBlob(what, s string, size int) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w", what, err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%s is %d bytes, want %d", what, len(b), size)
	}
	return b, nil
}

// QGSAddress is where a TDX host's quote generation service listens.
type QGSAddress struct {
	Network string // "vsock" or "unix"
	CID     uint32 // vsock only
	Port    uint32 // vsock only
	Path    string // unix only
}

// ParseQGSAddress parses "vsock:<cid>:<port>" or "unix:<absolute path>".
func ParseQGSAddress(s string) (QGSAddress, error) {
	network, rest, _ := strings.Cut(s, ":")
	switch network {
	case "vsock":
		cid, port, ok := strings.Cut(rest, ":")
		c, err1 := strconv.ParseUint(cid, 10, 32)
		p, err2 := strconv.ParseUint(port, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return QGSAddress{}, fmt.Errorf("quote generation socket %q: want vsock:<cid>:<port>", s)
		}
		return QGSAddress{Network: network, CID: uint32(c), Port: uint32(p)}, nil
	case "unix":
		if !filepath.IsAbs(rest) || strings.ContainsAny(rest, ",\n\x00") {
			return QGSAddress{}, fmt.Errorf("quote generation socket %q: want unix:<absolute path> without commas", s)
		}
		return QGSAddress{Network: network, Path: rest}, nil
	}
	return QGSAddress{}, fmt.Errorf("quote generation socket %q: want vsock:<cid>:<port> or unix:<path>", s)
}

// String formats a as ParseQGSAddress reads it.
func (a QGSAddress) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Path
	}
	return fmt.Sprintf("vsock:%d:%d", a.CID, a.Port)
}
