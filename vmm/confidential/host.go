package confidential

import (
	"errors"
	"fmt"

	"github.com/klauspost/cpuid/v2"
)

// ErrNoSNP means the host CPU does not offer SEV-SNP.
var ErrNoSNP = errors.New("host CPU does not support SEV-SNP")

// SEVHost is what the host CPU reports about AMD memory encryption in CPUID
// Fn8000_001F.
type SEVHost struct {
	SEV, SEVES, SNP bool // EAX bits 1, 3 and 4
	// CBitPos is the page-table bit that marks a page encrypted (EBX[5:0]).
	CBitPos uint8
	// ReducedPhysBits is how many physical address bits encryption takes
	// away (EBX[11:6]).
	ReducedPhysBits uint8
}

// HostSEV reads SEVHost from the CPU this process runs on. On CPUs without
// the leaf (Intel, older AMD, most nested VMs) everything is false or zero.
func HostSEV() SEVHost {
	enc := cpuid.CPU.AMDMemEncryption
	return SEVHost{
		SEV:             cpuid.CPU.Supports(cpuid.SEV),
		SEVES:           cpuid.CPU.Supports(cpuid.SEV_ES),
		SNP:             cpuid.CPU.Supports(cpuid.SEV_SNP),
		CBitPos:         uint8(enc.CBitPossition),
		ReducedPhysBits: uint8(enc.PhysAddrReduction),
	}
}

// CheckSNP fails with an error wrapping ErrNoSNP unless the host can launch
// SNP guests, as far as its CPU says: the kernel (kvm_amd sev_snp=1) and
// firmware must agree too, which only a launch shows.
func (h SEVHost) CheckSNP() error {
	switch {
	case !h.SNP:
		return fmt.Errorf("%w: CPUID Fn8000_001F does not advertise SEV-SNP (AMD EPYC 7003 or newer with SNP enabled in the BIOS is needed)", ErrNoSNP)
	case h.CBitPos == 0:
		return fmt.Errorf("%w: CPUID Fn8000_001F gives no C-bit position", ErrNoSNP)
	}
	return nil
}
