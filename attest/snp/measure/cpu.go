package measure

import (
	"fmt"
	"maps"
	"slices"
)

// CPUSig encodes family, model and stepping as CPUID Fn0000_0001 EAX
// reports them, which is what KVM loads into RDX at vCPU reset. Families
// above 0xf are split into base family 0xf plus an extended family, and
// the model's high nibble goes to the extended model field.
func CPUSig(family, model, stepping int) uint32 {
	var baseFamily, extFamily int
	if family > 0xf {
		baseFamily, extFamily = 0xf, family-0xf
	} else {
		baseFamily = family
	}
	return uint32(extFamily&0xff)<<20 |
		uint32((model>>4)&0xf)<<16 |
		uint32(baseFamily&0xf)<<8 |
		uint32(model&0xf)<<4 |
		uint32(stepping&0xf)
}

// vcpuModels maps QEMU -cpu model names usable with SEV to their family,
// model and stepping (QEMU target/i386/cpu.c).
var vcpuModels = map[string][3]int{
	"EPYC":          {23, 1, 2},
	"EPYC-v1":       {23, 1, 2},
	"EPYC-v2":       {23, 1, 2},
	"EPYC-IBPB":     {23, 1, 2},
	"EPYC-v3":       {23, 1, 2},
	"EPYC-v4":       {23, 1, 2},
	"EPYC-Rome":     {23, 49, 0},
	"EPYC-Rome-v1":  {23, 49, 0},
	"EPYC-Rome-v2":  {23, 49, 0},
	"EPYC-Rome-v3":  {23, 49, 0},
	"EPYC-Milan":    {25, 1, 1},
	"EPYC-Milan-v1": {25, 1, 1},
	"EPYC-Milan-v2": {25, 1, 1},
	"EPYC-Genoa":    {25, 17, 0},
	"EPYC-Genoa-v1": {25, 17, 0},
	"EPYC-Turin":    {26, 0, 0},
}

// VCPUSignature returns the CPUID signature of a QEMU vCPU model name such
// as "EPYC-Milan". Names are case-sensitive, as QEMU's are.
func VCPUSignature(vcpuType string) (uint32, error) {
	fms, ok := vcpuModels[vcpuType]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownVCPUType, vcpuType)
	}
	return CPUSig(fms[0], fms[1], fms[2]), nil
}

// VCPUTypes lists the vCPU model names VCPUSignature knows, sorted.
func VCPUTypes() []string {
	return slices.Sorted(maps.Keys(vcpuModels))
}
