package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sccontainers/scc/attest/internal/fwtable"
)

// TestParseDebianOVMF reads the TDX metadata of a real firmware build.
// The sections are OvmfPkgX64's (edk2 OvmfPkg/ResetVector
// IntelTdxMetadata.asm with the 2 MiB OvmfPkgX64.fdf layout): the code
// volume measured, the variable store at the bottom of the image, and the
// SEC page tables, TD HOB, mailbox/work area and temporary RAM under 9 MiB.
func TestParseDebianOVMF(t *testing.T) {
	fw, err := ParseTDVF(readFixture(t, debianOVMF))
	if err != nil {
		t.Fatal(err)
	}
	want := []Section{
		{DataOffset: 0x20000, RawDataSize: 0x1e0000, MemoryAddress: 0xffe20000, MemoryDataSize: 0x1e0000, Type: SectionBFV, Attributes: AttrMRExtend},
		{DataOffset: 0, RawDataSize: 0x20000, MemoryAddress: 0xffe00000, MemoryDataSize: 0x20000, Type: SectionCFV},
		{MemoryAddress: 0x810000, MemoryDataSize: 0x10000, Type: SectionTempMem},
		{MemoryAddress: 0x80b000, MemoryDataSize: 0x2000, Type: SectionTempMem},
		{MemoryAddress: 0x809000, MemoryDataSize: 0x2000, Type: SectionTDHOB},
		{MemoryAddress: 0x800000, MemoryDataSize: 0x6000, Type: SectionTempMem},
	}
	got := fw.Sections()
	if len(got) != len(want) {
		t.Fatalf("sections = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("section %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestSectionStrings(t *testing.T) {
	for v, want := range map[SectionType]string{SectionBFV: "BFV", SectionTDHOB: "TD_HOB", 0x100: "SectionType(0x100)"} {
		if v.String() != want {
			t.Errorf("%d: %q, want %q", uint32(v), v.String(), want)
		}
	}
	for v, want := range map[Attributes]string{0: "0", AttrMRExtend: "MR.EXTEND", AttrMRExtend | AttrPageAug | 8: "MR.EXTEND|PAGE.AUG|0x8"} {
		if v.String() != want {
			t.Errorf("%d: %q, want %q", uint32(v), v.String(), want)
		}
	}
}

// TestParseErrors corrupts one thing at a time in a valid image.
func TestParseErrors(t *testing.T) {
	md := func(b []byte) []byte { return b[len(b)-synthDescriptorBack:] }
	tests := []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"empty", func([]byte) []byte { return nil }, ErrNotTDVF},
		{"no footer table", func(b []byte) []byte { return make([]byte, len(b)) }, ErrNotTDVF},
		{"no TDX entry", func(b []byte) []byte {
			// Same table, another GUID.
			i := bytes.Index(b, guidTDXMetadataOffset[:])
			b[i] ^= 0xff
			return b
		}, ErrNotTDVF},
		{"footer table too long", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[len(b)-fwtable.Reserved-fwtable.EntryHeader:], 0xffff)
			return b
		}, ErrMalformedTDVF},
		{"short offset entry", func(b []byte) []byte { writeFooter(b, []byte{1, 2}); return b }, ErrMalformedTDVF},
		{"offset zero", func(b []byte) []byte { writeFooter(b, make([]byte, 4)); return b }, ErrMalformedTDVF},
		{"offset past the start", func(b []byte) []byte {
			writeFooter(b, binary.LittleEndian.AppendUint32(nil, uint32(len(b)+1)))
			return b
		}, ErrMalformedTDVF},
		{"descriptor runs past the end", func(b []byte) []byte {
			// The last 48 bytes hold the table, so a descriptor there
			// reads as garbage or runs out of the image.
			writeFooter(b, binary.LittleEndian.AppendUint32(nil, 16))
			copy(b[len(b)-16:], "TDVF\x30\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00")
			return b
		}, ErrMalformedTDVF},
		{"signature", func(b []byte) []byte { md(b)[0] = 'X'; return b }, ErrMalformedTDVF},
		{"version 2", func(b []byte) []byte { md(b)[8] = 2; return b }, ErrMalformedTDVF},
		{"length too short", func(b []byte) []byte { md(b)[4]--; return b }, ErrMalformedTDVF},
		{"no sections", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(md(b)[4:], 16)
			binary.LittleEndian.PutUint32(md(b)[12:], 0)
			return b
		}, ErrMalformedTDVF},
		{"huge section count", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(md(b)[4:], 16+32*0x7ffffff)
			binary.LittleEndian.PutUint32(md(b)[12:], 0x7ffffff)
			return b
		}, ErrMalformedTDVF},
		{"raw data outside the image", func(b []byte) []byte { setSection32(b, 0, 0, 0x2000); return b }, ErrMalformedTDVF},
		{"raw data offset overflow", func(b []byte) []byte { setSection32(b, 1, 0, 0xffffffff); return b }, ErrMalformedTDVF},
		{"memory smaller than raw data", func(b []byte) []byte { setSection(b, 1, 16, 0); return b }, ErrMalformedTDVF},
		{"unaligned address", func(b []byte) []byte { setSection(b, 2, 8, 0x800010); return b }, ErrMalformedTDVF},
		{"unaligned size", func(b []byte) []byte { setSection(b, 2, 16, 0x1800); return b }, ErrMalformedTDVF},
		{"zero size", func(b []byte) []byte { setSection(b, 2, 16, 0); return b }, ErrMalformedTDVF},
		{"wraps", func(b []byte) []byte { setSection(b, 2, 8, 0xfffffffffffff000); return b }, ErrMalformedTDVF},
		{"beyond 52 bits", func(b []byte) []byte { setSection(b, 2, 8, 1<<52); return b }, ErrMalformedTDVF},
		{"size beyond 52 bits", func(b []byte) []byte { setSection(b, 2, 16, 1<<52); return b }, ErrMalformedTDVF},
		{"overlap", func(b []byte) []byte { setSection(b, 3, 8, 0x801000); return b }, ErrMalformedTDVF},
		{"same address", func(b []byte) []byte { setSection(b, 4, 8, 0x809000); return b }, ErrMalformedTDVF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.edit(synthTDVF(synthSections))
			if fw, err := ParseTDVF(b); !errors.Is(err, tt.want) {
				t.Fatalf("ParseTDVF() = %+v, %v; want %v", fw, err, tt.want)
			}
		})
	}
}

// FuzzParseTDVF feeds arbitrary images to the parser and, for those it
// accepts, to the MRTD computation. Nothing may panic, every error must
// wrap a sentinel, and what parses must satisfy the checks.
func FuzzParseTDVF(f *testing.F) {
	f.Add(synthTDVF(synthSections))
	// The last page of the real image holds its metadata and footer; its
	// sections point outside that page, which the parser must refuse.
	deb := readFixture(f, debianOVMF)
	f.Add(deb[len(deb)-0x1000:])
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		fw, err := ParseTDVF(data)
		if err != nil {
			if !errors.Is(err, ErrNotTDVF) && !errors.Is(err, ErrMalformedTDVF) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		var total uint64
		for _, s := range fw.Sections() {
			if s.MemoryAddress%pageSize != 0 || s.MemoryDataSize%pageSize != 0 || s.MemoryDataSize == 0 ||
				s.MemoryDataSize < uint64(s.RawDataSize) || uint64(s.DataOffset)+uint64(s.RawDataSize) > uint64(len(data)) {
				t.Fatalf("parser accepted section %+v of a %d-byte image", s, len(data))
			}
			if s.MemoryAddress+s.MemoryDataSize > 1<<52 {
				t.Fatalf("parser accepted section %+v beyond 52 bits", s)
			}
			total += s.MemoryDataSize // at most 2^52 each: no wrap for any count that fits in memory
		}
		if len(fw.Sections()) == 0 {
			t.Fatal("parser accepted metadata without sections")
		}
		// Hashing gigabytes of pages is correct but too slow for a fuzz
		// iteration.
		if total > 16<<20 {
			return
		}
		for _, order := range []PageOrder{OrderPerPage, OrderAddsFirst} {
			d, err := fw.MRTD(order)
			if err != nil {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("MRTD error %v does not wrap ErrUnsupported", err)
				}
				continue
			}
			if len(d) != Size {
				t.Fatalf("MRTD of %d bytes", len(d))
			}
		}
	})
}
