package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
)

// Size is the size of MRTD and of each RTMR: a SHA-384 digest.
const Size = sha512.Size384

const (
	// recordSize is the block the TDX module hashes for each
	// TDH.MEM.PAGE.ADD and TDH.MR.EXTEND: an ASCII tag, the GPA at offset
	// 16, zeros.
	recordSize = 128
	recordGPA  = 16
	// extendChunk is what one TDH.MR.EXTEND measures.
	extendChunk = 256
	// maxSectionMemory bounds the guest memory the sections of one image
	// may cover. Real TDVF images describe a few MiB; QEMU would have to
	// back all of it before the TD starts, and hashing it page by page
	// must finish.
	maxSectionMemory = 1 << 30
)

// PageOrder is the order in which the host issues the TDX module calls of
// one section. It changes MRTD, and it is the host kernel's choice, not
// QEMU's: QEMU hands KVM one KVM_TDX_INIT_MEM_REGION per section.
type PageOrder int

const (
	// OrderPerPage adds a page and then extends its 16 chunks, page after
	// page: KVM_TDX_INIT_MEM_REGION of upstream Linux (6.16 and later),
	// which QEMU 10.1's TDX support runs on.
	OrderPerPage PageOrder = iota
	// OrderAddsFirst adds all the pages of a section, then extends them:
	// the TDX KVM trees that preceded the upstream merge (the QEMU 8.x
	// era TDX stacks).
	OrderAddsFirst
)

func (o PageOrder) String() string {
	switch o {
	case OrderPerPage:
		return "per-page"
	case OrderAddsFirst:
		return "adds-first"
	default:
		return fmt.Sprintf("PageOrder(%d)", int(o))
	}
}

// MRTD returns the MRTD a TD launched by QEMU from this firmware will
// report: for each metadata section in firmware order, TDH.MEM.PAGE.ADD
// of each of its pages and, for sections marked MR.EXTEND, TDH.MR.EXTEND of
// each 256-byte chunk of their content, in the given order.
//
// It mirrors QEMU's launch (hw/i386/tdvf.c, target/i386/kvm/tdx.c): the
// section types QEMU knows are BFV and CFV, copied from the image (QEMU
// reads MemoryDataSize bytes from DataOffset), and TD_HOB and TempMem,
// fresh memory; at least two sections. Anything else wraps
// ErrUnsupported. MRTD depends on nothing but the image: the TD HOB QEMU
// writes and the zeroed memory are added but not measured.
func (fw *TDVF) MRTD(order PageOrder) ([]byte, error) {
	if order != OrderPerPage && order != OrderAddsFirst {
		return nil, fmt.Errorf("mrtd: unknown page order %v", order)
	}
	if err := fw.checkQEMU(); err != nil {
		return nil, fmt.Errorf("mrtd: %w", err)
	}
	m := newMRTD()
	for _, s := range fw.sections {
		content := fw.content(s)
		pages := s.MemoryDataSize / pageSize
		extend := s.Attributes&AttrMRExtend != 0
		extendPage := func(p uint64) {
			for c := uint64(0); c < pageSize; c += extendChunk {
				var chunk []byte
				if content != nil {
					chunk = content[p*pageSize+c : p*pageSize+c+extendChunk]
				}
				m.mrExtend(s.MemoryAddress+p*pageSize+c, chunk)
			}
		}
		switch order {
		case OrderPerPage:
			for p := range pages {
				m.pageAdd(s.MemoryAddress + p*pageSize)
				if extend {
					extendPage(p)
				}
			}
		case OrderAddsFirst:
			for p := range pages {
				m.pageAdd(s.MemoryAddress + p*pageSize)
			}
			if extend {
				for p := range pages {
					extendPage(p)
				}
			}
		}
	}
	return m.h.Sum(nil), nil
}

// checkQEMU applies QEMU's checks of the sections it launches
// (tdvf_parse_and_check_section_entry) and refuses a measurement that
// would depend on data outside the image.
func (fw *TDVF) checkQEMU() error {
	if len(fw.sections) < 2 {
		return fmt.Errorf("%w: %d section(s); QEMU needs at least 2", ErrUnsupported, len(fw.sections))
	}
	var total uint64
	for i, s := range fw.sections {
		// ParseTDVF bounds each size by 2^52, so the sum cannot wrap.
		if total += s.MemoryDataSize; total > maxSectionMemory {
			return fmt.Errorf("%w: the sections cover more than %d MiB of guest memory", ErrUnsupported, maxSectionMemory>>20)
		}
		switch s.Type {
		case SectionBFV, SectionCFV:
			if s.RawDataSize == 0 {
				return fmt.Errorf("%w: section %d (%v) has no raw data", ErrUnsupported, i, s.Type)
			}
			if s.Attributes&AttrMRExtend != 0 && uint64(s.DataOffset)+s.MemoryDataSize > uint64(len(fw.data)) {
				return fmt.Errorf("%w: section %d (%v): QEMU would measure [%#x, +%#x), past the end of the %#x-byte image",
					ErrUnsupported, i, s.Type, s.DataOffset, s.MemoryDataSize, len(fw.data))
			}
		case SectionTDHOB, SectionTempMem:
			if s.RawDataSize != 0 {
				return fmt.Errorf("%w: section %d (%v) has %#x bytes of raw data; QEMU wants none", ErrUnsupported, i, s.Type, s.RawDataSize)
			}
			if s.Type == SectionTDHOB && s.Attributes&AttrMRExtend != 0 {
				return fmt.Errorf("%w: section %d: the TD HOB is marked MR.EXTEND, so MRTD would measure what QEMU writes into it", ErrUnsupported, i)
			}
		default:
			return fmt.Errorf("%w: section %d has type %v, which QEMU does not launch", ErrUnsupported, i, s.Type)
		}
	}
	return nil
}

// content returns what QEMU copies into the section's pages: MemoryDataSize
// bytes of the image from DataOffset for firmware volumes, nil (zeros) for
// fresh memory. checkQEMU has bounded it.
func (fw *TDVF) content(s Section) []byte {
	if s.Type != SectionBFV && s.Type != SectionCFV {
		return nil
	}
	end := uint64(s.DataOffset) + s.MemoryDataSize
	if end > uint64(len(fw.data)) {
		// Not measured (checkQEMU refuses it for MR.EXTEND sections).
		return nil
	}
	return fw.data[s.DataOffset:end]
}

// mrtd replays the TDX module's MRTD updates. The module keeps a SHA-384
// context open from TDH.MNG.INIT to TDH.MR.FINALIZE and feeds it whole
// 128-byte blocks.
type mrtd struct {
	h   hash.Hash
	buf [recordSize]byte
}

func newMRTD() *mrtd { return &mrtd{h: sha512.New384()} }

func (m *mrtd) record(tag string, gpa uint64) {
	clear(m.buf[:])
	copy(m.buf[:], tag)
	binary.LittleEndian.PutUint64(m.buf[recordGPA:], gpa)
	m.h.Write(m.buf[:])
}

// pageAdd is TDH.MEM.PAGE.ADD: "MEM.PAGE.ADD" and the page's GPA. The
// page's content is not measured.
func (m *mrtd) pageAdd(gpa uint64) { m.record("MEM.PAGE.ADD", gpa) }

// mrExtend is TDH.MR.EXTEND: "MR.EXTEND" and the chunk's GPA, then the
// chunk's 256 bytes as two more blocks. A nil chunk is zeros.
func (m *mrtd) mrExtend(gpa uint64, chunk []byte) {
	m.record("MR.EXTEND", gpa)
	if chunk == nil {
		var zero [extendChunk]byte
		m.h.Write(zero[:])
		return
	}
	m.h.Write(chunk)
}
