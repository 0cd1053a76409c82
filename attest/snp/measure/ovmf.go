package measure

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// fourGiB is where the firmware image ends in guest physical memory: the
// reset vector lives in its last 16 bytes, just below 4 GiB.
const fourGiB = 1 << 32

// guid is a GUID in the mixed-endian byte order EFI stores on disk.
type guid [16]byte

// mustGUID converts the canonical text form to the on-disk form: the first
// three groups are little-endian, the last two are bytes in order.
func mustGUID(s string) guid {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || strings.Count(s, "-") != 4 {
		panic("measure: bad GUID literal " + s)
	}
	var g guid
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

// GUIDs of the OVMF footer table (edk2 OvmfPkg/ResetVector) and of the
// coconut SVSM image.
var (
	guidFooterTable  = mustGUID("96b582de-1fb2-45f7-baea-a366c55a082d")
	guidSEVHashTable = mustGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
	guidSEVESReset   = mustGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidSEVMetadata  = mustGUID("dc886566-984a-4798-a75e-5585a7bf67cc")
	guidSVSMInfo     = mustGUID("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")
)

const (
	// footerReserved is the part of the image after the table: the reset
	// vector code and padding.
	footerReserved = 32
	// tableEntryHeader is the trailer of each table entry: a uint16 length
	// (covering the whole entry) followed by the GUID.
	tableEntryHeader = 2 + 16

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

// parseFooterTable reads the GUIDed table that ends footerReserved bytes
// before the end of the image. It is read backwards: the table's own
// header comes last, and each entry's length and GUID follow its data.
func parseFooterTable(data []byte) (map[guid][]byte, error) {
	table := map[guid][]byte{}
	end := len(data) - footerReserved - tableEntryHeader
	if end < 0 || guid(data[end+2:end+tableEntryHeader]) != guidFooterTable {
		return table, nil
	}
	total := int(binary.LittleEndian.Uint16(data[end:]))
	if total < tableEntryHeader || total-tableEntryHeader > end {
		return nil, fmt.Errorf("%w: footer table length %d out of range", ErrMalformedOVMF, total)
	}
	rest := data[end-(total-tableEntryHeader) : end]
	for len(rest) > 0 {
		if len(rest) < tableEntryHeader {
			return nil, fmt.Errorf("%w: %d stray bytes in footer table", ErrMalformedOVMF, len(rest))
		}
		hdr := rest[len(rest)-tableEntryHeader:]
		size := int(binary.LittleEndian.Uint16(hdr))
		if size < tableEntryHeader || size > len(rest) {
			return nil, fmt.Errorf("%w: footer table entry length %d out of range", ErrMalformedOVMF, size)
		}
		g := guid(hdr[2:])
		if _, dup := table[g]; dup {
			return nil, fmt.Errorf("%w: duplicate footer table entry %x", ErrMalformedOVMF, g[:])
		}
		table[g] = rest[len(rest)-size : len(rest)-tableEntryHeader]
		rest = rest[:len(rest)-size]
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
