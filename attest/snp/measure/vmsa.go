package measure

import "encoding/binary"

// vmsaSize is the size of a VM save area: one page.
const vmsaSize = pageSize

// Offsets of the fields this package sets in the VMSA (AMD64 APM vol. 2,
// table B-4, "VMSA Layout, State Save Area for SEV-ES"). Everything else
// is zero at reset.
const (
	vmsaES      = 0x000 // segments: selector u16, attrib u16, limit u32, base u64
	vmsaCS      = 0x010
	vmsaSS      = 0x020
	vmsaDS      = 0x030
	vmsaFS      = 0x040
	vmsaGS      = 0x050
	vmsaGDTR    = 0x060
	vmsaLDTR    = 0x070
	vmsaIDTR    = 0x080
	vmsaTR      = 0x090
	vmsaEFER    = 0x0d0
	vmsaCR4     = 0x148
	vmsaCR0     = 0x158
	vmsaDR7     = 0x160
	vmsaDR6     = 0x168
	vmsaRFLAGS  = 0x170
	vmsaRIP     = 0x178
	vmsaGPAT    = 0x268
	vmsaRDX     = 0x310
	vmsaSEVFeat = 0x3b0
	vmsaXCR0    = 0x3e8
	vmsaMXCSR   = 0x408
	vmsaX87FCW  = 0x410
)

// bspResetEIP is where the bootstrap processor starts: the x86 reset
// vector, 16 bytes below 4 GiB.
const bspResetEIP = 0xfffffff0

// Register values common to every VMM's reset state.
const (
	resetEFER   = 0x1000 // EFER.SVME: KVM requires it set for SEV-ES guests
	resetCR4    = 0x40   // CR4.MCE: set by KVM at vCPU reset
	resetDR7    = 0x400
	resetDR6    = 0xffff0ff0
	resetRFLAGS = 0x2
	resetXCR0   = 0x1
	defaultPAT  = 0x0007040600070406 // power-on PAT (APM vol. 2, A.3)
	gcePAT      = 0x00070106         // GCE's hypervisor loads its own PAT
	qemuMXCSR   = 0x1f80             // KVM (Linux 6.9+) initialises the FPU state
	qemuFCW     = 0x37f
	fixedRDX    = 0x600 // KVM's reset RDX when no CPUID signature is set: what EC2 and GCE leave
)

type vmsa [vmsaSize]byte

func (v *vmsa) u16(off int, x uint16) { binary.LittleEndian.PutUint16(v[off:], x) }
func (v *vmsa) u32(off int, x uint32) { binary.LittleEndian.PutUint32(v[off:], x) }
func (v *vmsa) u64(off int, x uint64) { binary.LittleEndian.PutUint64(v[off:], x) }

func (v *vmsa) seg(off int, selector, attrib uint16, limit uint32, base uint64) {
	v.u16(off, selector)
	v.u16(off+2, attrib)
	v.u32(off+4, limit)
	v.u64(off+8, base)
}

// resetVMSA builds the VMSA a vCPU has at launch when it starts in real
// mode at eip, the way the given VMM initialises it. vcpuSig is the CPUID
// signature KVM loads into RDX at reset; only QEMU takes it from the
// configured vCPU model.
func resetVMSA(eip uint32, sevFeatures uint64, vcpuSig uint32, vmm VMMType) *vmsa {
	// The VMMs differ in segment attribute bits they set at reset
	// (accessed bits, TSS busy type), in RDX, in the FPU reset state and,
	// for GCE, in PAT.
	csAttr, ssAttr, trAttr := uint16(0x9b), uint16(0x93), uint16(0x8b)
	rdx := uint64(vcpuSig)
	mxcsr, fcw := uint32(qemuMXCSR), uint16(qemuFCW)
	pat := uint64(defaultPAT)
	switch vmm {
	case VMMEC2:
		if eip == bspResetEIP {
			csAttr = 0x9a
		}
		ssAttr, trAttr = 0x92, 0x83
		rdx, mxcsr, fcw = fixedRDX, 0, 0
	case VMMGCE:
		rdx, mxcsr, fcw = fixedRDX, 0, 0
		pat = gcePAT
	}

	v := new(vmsa)
	v.seg(vmsaES, 0, 0x93, 0xffff, 0)
	// Real mode: CS.base holds the upper bits of eip, RIP the low 16.
	v.seg(vmsaCS, 0xf000, csAttr, 0xffff, uint64(eip&0xffff0000))
	v.seg(vmsaSS, 0, ssAttr, 0xffff, 0)
	v.seg(vmsaDS, 0, 0x93, 0xffff, 0)
	v.seg(vmsaFS, 0, 0x93, 0xffff, 0)
	v.seg(vmsaGS, 0, 0x93, 0xffff, 0)
	v.seg(vmsaGDTR, 0, 0, 0xffff, 0)
	v.seg(vmsaLDTR, 0, 0x82, 0xffff, 0)
	v.seg(vmsaIDTR, 0, 0, 0xffff, 0)
	v.seg(vmsaTR, 0, trAttr, 0xffff, 0)
	v.u64(vmsaEFER, resetEFER)
	v.u64(vmsaCR4, resetCR4)
	v.u64(vmsaCR0, 0x10) // CR0.ET
	v.u64(vmsaDR7, resetDR7)
	v.u64(vmsaDR6, resetDR6)
	v.u64(vmsaRFLAGS, resetRFLAGS)
	v.u64(vmsaRIP, uint64(eip&0xffff))
	v.u64(vmsaGPAT, pat)
	v.u64(vmsaRDX, rdx)
	v.u64(vmsaSEVFeat, sevFeatures)
	v.u64(vmsaXCR0, resetXCR0)
	v.u32(vmsaMXCSR, mxcsr)
	v.u16(vmsaX87FCW, fcw)
	return v
}

// svsmVMSA builds the VMSA of a vCPU entering the coconut SVSM, which QEMU
// starts in 32-bit protected mode with flat segments at the SVSM entry
// point. Every vCPU, BSP included, gets the same state.
func svsmVMSA(eip uint32, vcpuSig uint32) *vmsa {
	v := new(vmsa)
	v.seg(vmsaES, 16, 0xc93, 0xffffffff, 0)
	v.seg(vmsaCS, 8, 0xc9b, 0xffffffff, 0)
	v.seg(vmsaSS, 16, 0xc93, 0xffffffff, 0)
	v.seg(vmsaDS, 16, 0xc93, 0xffffffff, 0)
	v.seg(vmsaFS, 16, 0xc93, 0xffffffff, 0)
	v.seg(vmsaGS, 0, 0x93, 0xffff, 0)
	v.seg(vmsaGDTR, 0, 0, 0xffff, 0)
	v.seg(vmsaLDTR, 0, 0x82, 0xffff, 0)
	v.seg(vmsaIDTR, 0, 0, 0xffff, 0)
	v.seg(vmsaTR, 0, 0x8b, 0xffff, 0)
	v.u64(vmsaEFER, resetEFER)
	v.u64(vmsaCR4, resetCR4)
	v.u64(vmsaCR0, 0x11) // CR0.ET | CR0.PE
	v.u64(vmsaDR7, resetDR7)
	v.u64(vmsaDR6, resetDR6)
	v.u64(vmsaRFLAGS, resetRFLAGS)
	v.u64(vmsaRIP, uint64(eip))
	v.u64(vmsaGPAT, defaultPAT)
	v.u64(vmsaRDX, uint64(vcpuSig))
	v.u64(vmsaSEVFeat, sevFeatSNPActive)
	v.u64(vmsaXCR0, resetXCR0)
	// MXCSR has its reset value but x87 FCW stays zero, unlike resetVMSA:
	// the digests read from real coconut-svsm launches (testdata vectors
	// test_snp_svsm_*) match only this combination.
	v.u32(vmsaMXCSR, qemuMXCSR)
	return v
}

// sevFeatSNPActive is SEV_FEATURES bit 0: the guest runs under SNP.
const sevFeatSNPActive = 0x1

// vmsaPages returns the VMSAs of vcpus vCPUs in launch order: the BSP
// first, then the APs, which all share one state.
func vmsaPages(vcpus int, bsp, ap *vmsa) []*vmsa {
	pages := make([]*vmsa, vcpus)
	for i := range pages {
		if i == 0 {
			pages[i] = bsp
		} else {
			pages[i] = ap
		}
	}
	return pages
}
