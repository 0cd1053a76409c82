package measure

import (
	"encoding/binary"
	"fmt"

	"github.com/sccontainers/scc/attest/internal/fwtable"
)

// fourGiB is where the firmware image ends in guest physical memory: the
// reset vector lives in its last 16 bytes, just below 4 GiB.
const fourGiB = 1 << 32

// guid is a GUID in the mixed-endian byte order EFI stores on disk.
type guid = fwtable.GUID

func mustGUID(s string) guid { return fwtable.MustGUID(s) }

// GUIDs of the OVMF footer table (edk2 OvmfPkg/ResetVector) and of the
// coconut SVSM image.
var (
	guidFooterTable  = fwtable.FooterGUID
	guidSEVHashTable = mustGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
	guidSEVESReset   = mustGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidSEVMetadata  = mustGUID("dc886566-984a-4798-a75e-5585a7bf67cc")
	guidSVSMInfo     = mustGUID("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")
)

const (
	footerReserved   = fwtable.Reserved
	tableEntryHeader = fwtable.EntryHeader

	metadataHeaderSize = 16 // "ASEV", length, version, item count
	metadataItemSize   = 12 // gpa, size, type (uint32 each)
	metadataVersion    = 1
)

// SectionType is the type of a firmware SEV metadata section; it tells the
// VMM how to hand the pages to the secure processor at launch.
type SectionType uint32

// Section types, as OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm defines
// them.
const (
	// SectionSNPSecMem is memory the firmware pre-validates: measured as
	// zero pages (unmeasured pages on GCE).
	SectionSNPSecMem SectionType = 1
	// SectionSNPSecrets is the page the secure processor fills with the
	// guest's VMPCKs.
	SectionSNPSecrets SectionType = 2
	// SectionCPUID is the page the secure processor fills with the
	// validated CPUID table.
	SectionCPUID SectionType = 3
	// SectionSVSMCAA is the SVSM calling area: measured as zero pages.
	SectionSVSMCAA SectionType = 4
	// SectionSNPKernelHashes is the page holding the SEV hashes table for
	// measured direct boot.
	SectionSNPKernelHashes SectionType = 0x10
)

func (t SectionType) String() string {
	switch t {
	case SectionSNPSecMem:
		return "SNP_SEC_MEM"
	case SectionSNPSecrets:
		return "SNP_SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionSNPKernelHashes:
		return "SNP_KERNEL_HASHES"
	default:
		return fmt.Sprintf("SectionType(%#x)", uint32(t))
	}
}

// MetadataSection is one descriptor of the firmware's SEV metadata.
type MetadataSection struct {
	GPA  uint32
	Size uint32
	Type SectionType
}

// OVMF is a parsed firmware image (OVMF, or an SVSM image, which uses the
// same footer format) placed in guest memory so that it ends at a fixed
// address.
type OVMF struct {
	data     []byte // not copied: callers must not modify it
	gpa      uint64
	table    map[guid][]byte
	sections []MetadataSection
}

// ParseOVMF parses a firmware image mapped, as QEMU maps its -bios / pflash
// code, so that it ends at 4 GiB. The image need not have a footer table
// (plain SEV without direct boot measures the bytes only); a footer that is
// present must be well formed. data is retained, not copied.
func ParseOVMF(data []byte) (*OVMF, error) {
	return parseImage(data, fourGiB)
}

// parseImage parses a firmware-format image ending at endAt.
func parseImage(data []byte, endAt uint64) (*OVMF, error) {
	if uint64(len(data)) > endAt {
		return nil, fmt.Errorf("%w: image of %d bytes does not fit below %#x", ErrMalformedOVMF, len(data), endAt)
	}
	table, err := parseFooterTable(data)
	if err != nil {
		return nil, err
	}
	fw := &OVMF{data: data, gpa: endAt - uint64(len(data)), table: table}
	if entry, ok := table[guidSEVMetadata]; ok {
		fw.sections, err = parseMetadata(data, entry)
		if err != nil {
			return nil, err
		}
	}
	return fw, nil
}

// parseFooterTable reads the GUIDed table at the end of the image.
func parseFooterTable(data []byte) (map[guid][]byte, error) {
	table, err := fwtable.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedOVMF, err)
	}
	return table, nil
}

// parseMetadata reads the "ASEV" block the metadata table entry points to
// (by its distance from the end of the image).
func parseMetadata(data, entry []byte) ([]MetadataSection, error) {
	if len(entry) < 4 {
		return nil, fmt.Errorf("%w: SEV metadata entry too short", ErrMalformedOVMF)
	}
	back := uint64(binary.LittleEndian.Uint32(entry))
	if back > uint64(len(data)) || back < metadataHeaderSize {
		return nil, fmt.Errorf("%w: SEV metadata offset %#x out of range", ErrMalformedOVMF, back)
	}
	md := data[uint64(len(data))-back:]
	if string(md[:4]) != "ASEV" {
		return nil, fmt.Errorf("%w: bad SEV metadata signature %q", ErrMalformedOVMF, md[:4])
	}
	size := uint64(binary.LittleEndian.Uint32(md[4:]))
	version := binary.LittleEndian.Uint32(md[8:])
	count := uint64(binary.LittleEndian.Uint32(md[12:]))
	if version != metadataVersion {
		return nil, fmt.Errorf("%w: SEV metadata version %d, want %d", ErrMalformedOVMF, version, metadataVersion)
	}
	if size < metadataHeaderSize || size > uint64(len(md)) || count > (size-metadataHeaderSize)/metadataItemSize {
		return nil, fmt.Errorf("%w: SEV metadata of %d bytes cannot hold %d sections", ErrMalformedOVMF, size, count)
	}
	sections := make([]MetadataSection, 0, count)
	for i := uint64(0); i < count; i++ {
		item := md[metadataHeaderSize+i*metadataItemSize:]
		s := MetadataSection{
			GPA:  binary.LittleEndian.Uint32(item),
			Size: binary.LittleEndian.Uint32(item[4:]),
			Type: SectionType(binary.LittleEndian.Uint32(item[8:])),
		}
		// The secure processor works on whole pages; a section that is
		// not page aligned or wraps past 4 GiB cannot be launched.
		if s.GPA%pageSize != 0 || s.Size%pageSize != 0 || uint64(s.GPA)+uint64(s.Size) > fourGiB {
			return nil, fmt.Errorf("%w: SEV metadata section %d (%v at %#x, %#x bytes) not page aligned below 4 GiB",
				ErrMalformedOVMF, i, s.Type, s.GPA, s.Size)
		}
		sections = append(sections, s)
	}
	return sections, nil
}

// GPA is the guest physical address of the first byte of the image.
func (fw *OVMF) GPA() uint64 { return fw.gpa }

// Size is the image length in bytes.
func (fw *OVMF) Size() int { return len(fw.data) }

// Sections returns the SEV metadata sections in firmware order, which is
// the order the VMM measures them in. It is empty when the image has no
// metadata. The caller must not modify the slice.
func (fw *OVMF) Sections() []MetadataSection { return fw.sections }

func (fw *OVMF) hasSection(t SectionType) bool {
	for _, s := range fw.sections {
		if s.Type == t {
			return true
		}
	}
	return false
}

// entryUint32 returns the first four bytes of a footer table entry.
func (fw *OVMF) entryUint32(g guid, name string) (uint32, bool, error) {
	e, ok := fw.table[g]
	if !ok {
		return 0, false, nil
	}
	if len(e) < 4 {
		return 0, false, fmt.Errorf("%w: %s entry too short", ErrMalformedOVMF, name)
	}
	return binary.LittleEndian.Uint32(e), true, nil
}

// SEVESResetEIP returns the address at which application processors start
// (the SEV-ES reset block). SEV-ES and SNP guests need it to build the AP
// VMSAs, since they cannot be sent a SIPI to an arbitrary vector.
func (fw *OVMF) SEVESResetEIP() (uint32, error) {
	eip, ok, err := fw.entryUint32(guidSEVESReset, "SEV-ES reset block")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: no SEV-ES reset block", ErrMissingMetadata)
	}
	return eip, nil
}

// SEVHashesTableGPA returns where the firmware expects QEMU to place the
// SEV hashes table for measured direct boot; ok is false when the firmware
// does not support it (no entry, or a zero address as in OvmfPkgX64).
func (fw *OVMF) SEVHashesTableGPA() (gpa uint32, ok bool, err error) {
	gpa, ok, err = fw.entryUint32(guidSEVHashTable, "SEV hashes table")
	return gpa, ok && gpa != 0, err
}

// svsmResetEIP returns the SVSM entry point: the SVSM info entry holds it
// as an offset from the start of the image.
func (fw *OVMF) svsmResetEIP() (uint32, error) {
	off, ok, err := fw.entryUint32(guidSVSMInfo, "SVSM info")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: no SVSM info entry", ErrMissingMetadata)
	}
	eip := fw.gpa + uint64(off)
	if eip >= fourGiB {
		return 0, fmt.Errorf("%w: SVSM entry point %#x above 4 GiB", ErrMalformedOVMF, eip)
	}
	return uint32(eip), nil
}
