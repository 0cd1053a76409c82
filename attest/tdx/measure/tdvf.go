package measure

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/sccontainers/scc/attest/internal/fwtable"
)

// guidTDXMetadataOffset is the footer table entry whose first four bytes
// give the distance from the end of the image back to the TDVF metadata
// descriptor (TDX_METADATA_OFFSET_GUID).
var guidTDXMetadataOffset = fwtable.MustGUID("e47a6535-984a-4798-865e-4685a7bf8ec2")

const (
	pageSize = 0x1000

	// maxGPA bounds guest physical addresses: TDX's widest guest
	// physical address width is 52 bits.
	maxGPA = 1 << 52

	descriptorSize = 16 // "TDVF", Length, Version, NumberOfSectionEntries
	sectionSize    = 32 // DataOffset, RawDataSize, MemoryAddress, MemoryDataSize, Type, Attributes
	tdvfVersion    = 1
)

// SectionType is the type of a TDVF metadata section: what the VMM puts in
// the pages it describes.
type SectionType uint32

// Section types of the TDVF design guide.
const (
	// SectionBFV is the boot firmware volume: the firmware's code, copied
	// from the image and measured into MRTD.
	SectionBFV SectionType = 0
	// SectionCFV is the configuration firmware volume (the UEFI variable
	// store), copied from the image; its content is measured by the
	// firmware into RTMR[0], not into MRTD.
	SectionCFV SectionType = 1
	// SectionTDHOB is the page range where the VMM writes the TD hand-off
	// block describing the guest's memory.
	SectionTDHOB SectionType = 2
	// SectionTempMem is zeroed memory the firmware uses before it accepts
	// the rest of RAM (stacks, heap, page tables, mailbox).
	SectionTempMem SectionType = 3
	// SectionPermMem is memory the VMM adds and the firmware keeps.
	SectionPermMem SectionType = 4
	// SectionPayload and SectionPayloadParam hold a payload (a kernel) and
	// its parameters, for firmware that boots one from its own image.
	SectionPayload      SectionType = 5
	SectionPayloadParam SectionType = 6
)

func (t SectionType) String() string {
	switch t {
	case SectionBFV:
		return "BFV"
	case SectionCFV:
		return "CFV"
	case SectionTDHOB:
		return "TD_HOB"
	case SectionTempMem:
		return "TempMem"
	case SectionPermMem:
		return "PermMem"
	case SectionPayload:
		return "Payload"
	case SectionPayloadParam:
		return "PayloadParam"
	default:
		return fmt.Sprintf("SectionType(%#x)", uint32(t))
	}
}

// Attributes are a section's attribute bits.
type Attributes uint32

// Attribute bits of the TDVF design guide.
const (
	// AttrMRExtend asks the VMM to measure the section's content into
	// MRTD with TDH.MR.EXTEND.
	AttrMRExtend Attributes = 1 << 0
	// AttrPageAug marks memory the guest accepts itself (TDH.MEM.PAGE.AUG)
	// rather than memory the VMM adds before launch. QEMU does not act on
	// it: it adds every section with TDH.MEM.PAGE.ADD.
	AttrPageAug Attributes = 1 << 1
)

func (a Attributes) String() string {
	var parts []string
	if a&AttrMRExtend != 0 {
		parts = append(parts, "MR.EXTEND")
	}
	if a&AttrPageAug != 0 {
		parts = append(parts, "PAGE.AUG")
	}
	if rest := a &^ (AttrMRExtend | AttrPageAug); rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}

// Section is one entry of the TDVF metadata.
type Section struct {
	DataOffset     uint32 // where the section's data starts in the image
	RawDataSize    uint32 // bytes of data in the image
	MemoryAddress  uint64 // guest physical address of the first page
	MemoryDataSize uint64 // bytes of guest memory, whole pages
	Type           SectionType
	Attributes     Attributes
}

func (s Section) end() uint64 { return s.MemoryAddress + s.MemoryDataSize }

// TDVF is a firmware image with valid TDX metadata.
type TDVF struct {
	data     []byte // not copied: callers must not modify it
	sections []Section
}

// ParseTDVF reads the TDX metadata of a firmware image, the file QEMU
// loads with -bios: the footer table entry that locates the "TDVF"
// descriptor, and the descriptor's sections. It checks what the TDVF
// design guide and QEMU require of the structure: signature, version 1, a
// descriptor length that covers exactly its sections, raw data inside the
// image, page-aligned guest ranges that neither wrap nor overlap, and
// MemoryDataSize >= RawDataSize. Whether QEMU launches the section types
// found is checked by MRTD. data is retained, not copied.
func ParseTDVF(data []byte) (*TDVF, error) {
	table, err := fwtable.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedTDVF, err)
	}
	entry, ok := table[guidTDXMetadataOffset]
	if !ok {
		return nil, fmt.Errorf("%w: no TDX metadata offset entry in the footer table", ErrNotTDVF)
	}
	if len(entry) < 4 {
		return nil, fmt.Errorf("%w: TDX metadata offset entry of %d bytes", ErrMalformedTDVF, len(entry))
	}
	back := uint64(binary.LittleEndian.Uint32(entry))
	if back < descriptorSize || back > uint64(len(data)) {
		return nil, fmt.Errorf("%w: TDX metadata offset %#x out of range for a %#x-byte image", ErrMalformedTDVF, back, len(data))
	}
	md := data[uint64(len(data))-back:]
	if sig := md[:4]; string(sig) != "TDVF" {
		return nil, fmt.Errorf("%w: descriptor signature %q, want \"TDVF\"", ErrMalformedTDVF, sig)
	}
	length := uint64(binary.LittleEndian.Uint32(md[4:]))
	version := binary.LittleEndian.Uint32(md[8:])
	count := uint64(binary.LittleEndian.Uint32(md[12:]))
	if version != tdvfVersion {
		return nil, fmt.Errorf("%w: descriptor version %d, want %d", ErrMalformedTDVF, version, tdvfVersion)
	}
	if count == 0 || length != descriptorSize+count*sectionSize {
		return nil, fmt.Errorf("%w: descriptor length %#x does not hold exactly %d sections", ErrMalformedTDVF, length, count)
	}
	if length > uint64(len(md)) {
		return nil, fmt.Errorf("%w: descriptor of %#x bytes runs past the end of the image", ErrMalformedTDVF, length)
	}
	sections := make([]Section, 0, count)
	for i := range count {
		b := md[descriptorSize+i*sectionSize:]
		s := Section{
			DataOffset:     binary.LittleEndian.Uint32(b),
			RawDataSize:    binary.LittleEndian.Uint32(b[4:]),
			MemoryAddress:  binary.LittleEndian.Uint64(b[8:]),
			MemoryDataSize: binary.LittleEndian.Uint64(b[16:]),
			Type:           SectionType(binary.LittleEndian.Uint32(b[24:])),
			Attributes:     Attributes(binary.LittleEndian.Uint32(b[28:])),
		}
		if err := checkSection(s, uint64(len(data))); err != nil {
			return nil, fmt.Errorf("%w: section %d (%v): %w", ErrMalformedTDVF, i, s.Type, err)
		}
		sections = append(sections, s)
	}
	if err := checkOverlap(sections); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedTDVF, err)
	}
	return &TDVF{data: data, sections: sections}, nil
}

// checkSection checks one section on its own.
func checkSection(s Section, imageSize uint64) error {
	switch {
	case uint64(s.DataOffset)+uint64(s.RawDataSize) > imageSize:
		return fmt.Errorf("raw data [%#x, +%#x) outside the %#x-byte image", s.DataOffset, s.RawDataSize, imageSize)
	case s.MemoryDataSize < uint64(s.RawDataSize):
		return fmt.Errorf("MemoryDataSize %#x < RawDataSize %#x", s.MemoryDataSize, s.RawDataSize)
	case s.MemoryAddress%pageSize != 0 || s.MemoryDataSize%pageSize != 0:
		return fmt.Errorf("memory [%#x, +%#x) not page aligned", s.MemoryAddress, s.MemoryDataSize)
	case s.MemoryDataSize == 0:
		return fmt.Errorf("no memory at %#x", s.MemoryAddress)
	case s.MemoryAddress >= maxGPA || s.MemoryDataSize > maxGPA-s.MemoryAddress:
		return fmt.Errorf("memory [%#x, +%#x) beyond the 52-bit guest physical address space", s.MemoryAddress, s.MemoryDataSize)
	}
	return nil
}

// checkOverlap refuses sections that share guest pages: the TDX module
// adds each page once.
func checkOverlap(sections []Section) error {
	sorted := slices.Clone(sections)
	slices.SortFunc(sorted, func(a, b Section) int {
		switch {
		case a.MemoryAddress < b.MemoryAddress:
			return -1
		case a.MemoryAddress > b.MemoryAddress:
			return 1
		}
		return 0
	})
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if b.MemoryAddress < a.end() {
			return fmt.Errorf("sections %v [%#x, %#x) and %v [%#x, %#x) overlap",
				a.Type, a.MemoryAddress, a.end(), b.Type, b.MemoryAddress, b.end())
		}
	}
	return nil
}

// Sections returns the metadata sections in firmware order, which is the
// order QEMU adds them in. The caller must not modify the slice.
func (fw *TDVF) Sections() []Section { return fw.sections }
