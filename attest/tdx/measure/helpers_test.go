package measure

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sccontainers/scc/attest/internal/fwtable"
)

// debianOVMF is a real TDVF: OvmfPkgX64 of edk2-stable202211 as Debian 12
// ships it (testdata/README.md).
const debianOVMF = "debian-ovmf-2022.11-6+deb12u2.fd"

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// synthSection is a metadata section of a synthetic image.
type synthSection struct {
	dataOffset, rawSize uint32
	addr, size          uint64
	typ                 SectionType
	attrs               Attributes
}

// synthDescriptorBack is how far before the end of a synthetic image its
// TDVF descriptor starts.
const synthDescriptorBack = 0x400

// synthSections are the sections of synthTDVF: firmware volumes that end at
// 4 GiB like OVMF's, fresh memory below 16 MiB, and a TempMem section
// marked MR.EXTEND so that zero pages are measured too.
var synthSections = []synthSection{
	{dataOffset: 0x1000, rawSize: 0x5000, addr: 0xffffb000, size: 0x5000, typ: SectionBFV, attrs: AttrMRExtend},
	{dataOffset: 0, rawSize: 0x1000, addr: 0xffffa000, size: 0x1000, typ: SectionCFV},
	{addr: 0x800000, size: 0x2000, typ: SectionTempMem},
	{addr: 0x809000, size: 0x1000, typ: SectionTDHOB},
	{addr: 0x810000, size: 0x1000, typ: SectionTempMem, attrs: AttrMRExtend},
}

// synthTDVF builds a 24 KiB TDVF image by hand from the design guide's
// layout: patterned content, the descriptor with sections near the end,
// and the footer GUID table holding the metadata offset entry.
func synthTDVF(sections []synthSection) []byte {
	const size = 0x6000
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i*31 + i>>11)
	}
	md := img[size-synthDescriptorBack:]
	copy(md, "TDVF")
	binary.LittleEndian.PutUint32(md[4:], uint32(16+32*len(sections)))
	binary.LittleEndian.PutUint32(md[8:], 1)
	binary.LittleEndian.PutUint32(md[12:], uint32(len(sections)))
	for i, s := range sections {
		b := md[16+32*i:]
		binary.LittleEndian.PutUint32(b, s.dataOffset)
		binary.LittleEndian.PutUint32(b[4:], s.rawSize)
		binary.LittleEndian.PutUint64(b[8:], s.addr)
		binary.LittleEndian.PutUint64(b[16:], s.size)
		binary.LittleEndian.PutUint32(b[24:], uint32(s.typ))
		binary.LittleEndian.PutUint32(b[28:], uint32(s.attrs))
	}
	writeFooter(img, binary.LittleEndian.AppendUint32(nil, synthDescriptorBack))
	return img
}

// writeFooter writes, at the end of img, a footer table holding one TDX
// metadata offset entry with the given data.
func writeFooter(img, entry []byte) {
	var table []byte
	table = append(table, entry...)
	table = binary.LittleEndian.AppendUint16(table, uint16(len(entry)+fwtable.EntryHeader))
	table = append(table, guidTDXMetadataOffset[:]...)
	table = binary.LittleEndian.AppendUint16(table, uint16(len(table)+fwtable.EntryHeader))
	table = append(table, fwtable.FooterGUID[:]...)
	end := len(img) - fwtable.Reserved
	copy(img[end-len(table):end], table)
	clear(img[end:])
}
