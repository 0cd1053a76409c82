package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

func TestParseOVMFFixtures(t *testing.T) {
	tests := []struct {
		file       string
		sections   []SectionType
		resetEIP   uint32
		hashesGPA  uint32
		hashesOK   bool
		kernelHash bool
	}{
		{
			file: "ovmf_AmdSev_suffix.bin",
			sections: []SectionType{SectionSNPSecMem, SectionSNPSecMem, SectionSNPSecrets, SectionCPUID,
				SectionSVSMCAA, SectionSNPKernelHashes, SectionSNPSecMem},
			resetEIP: 0x80b004, hashesGPA: 0x810c00, hashesOK: true, kernelHash: true,
		},
		{
			file: "ovmf_OvmfX64_suffix.bin",
			sections: []SectionType{SectionSNPSecMem, SectionSNPSecMem, SectionSNPSecrets, SectionCPUID,
				SectionSVSMCAA, SectionSNPSecMem},
			resetEIP: 0x80b004,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readFixture(t, tt.file)
			fw, err := ParseOVMF(data)
			if err != nil {
				t.Fatal(err)
			}
			if fw.GPA() != 0xfffff000 || fw.Size() != len(data) {
				t.Errorf("GPA() = %#x, Size() = %d", fw.GPA(), fw.Size())
			}
			var types []SectionType
			for _, s := range fw.Sections() {
				types = append(types, s.Type)
			}
			if !slices.Equal(types, tt.sections) {
				t.Errorf("section types %v, want %v", types, tt.sections)
			}
			if got := fw.hasSection(SectionSNPKernelHashes); got != tt.kernelHash {
				t.Errorf("has SNP_KERNEL_HASHES = %v", got)
			}
			eip, err := fw.SEVESResetEIP()
			if err != nil || eip != tt.resetEIP {
				t.Errorf("SEVESResetEIP() = %#x, %v; want %#x", eip, err, tt.resetEIP)
			}
			gpa, ok, err := fw.SEVHashesTableGPA()
			if err != nil || ok != tt.hashesOK || (ok && gpa != tt.hashesGPA) {
				t.Errorf("SEVHashesTableGPA() = %#x, %v, %v; want %#x, %v", gpa, ok, err, tt.hashesGPA, tt.hashesOK)
			}
		})
	}
}

func TestParseSVSMImage(t *testing.T) {
	data := readFixture(t, "svsm.bin")
	const end = 0xffc00000
	img, err := parseImage(data, end)
	if err != nil {
		t.Fatal(err)
	}
	if img.GPA()+uint64(img.Size()) != end {
		t.Errorf("image at %#x+%#x does not end at %#x", img.GPA(), img.Size(), end)
	}
	eip, err := img.svsmResetEIP()
	if err != nil {
		t.Fatal(err)
	}
	// The SVSM's info entry holds offset 0: it is entered at its first byte.
	if uint64(eip) != img.GPA() {
		t.Errorf("svsmResetEIP() = %#x, want %#x", eip, img.GPA())
	}
	if n := len(img.Sections()); n != 3 {
		t.Errorf("%d sections, want 3", n)
	}
}

// footer returns the offsets of the footer table's length field and of the
// SEV metadata block in a fixture.
func footerOffsets(t *testing.T, data []byte) (lenField, metadata int) {
	t.Helper()
	lenField = len(data) - footerReserved - tableEntryHeader
	off := entryDataOffset(t, data, guidSEVMetadata)
	return lenField, len(data) - int(binary.LittleEndian.Uint32(data[off:]))
}

func TestParseOVMFMalformed(t *testing.T) {
	base := readFixture(t, "ovmf_AmdSev_suffix.bin")
	lenField, md := footerOffsets(t, base)
	put16 := func(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
	put32 := func(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	tests := []struct {
		name string
		edit func([]byte)
	}{
		{"footer length below header", func(b []byte) { put16(b, lenField, 17) }},
		{"footer length beyond image", func(b []byte) { put16(b, lenField, 0xffff) }},
		{"footer length splits an entry", func(b []byte) { put16(b, lenField, binary.LittleEndian.Uint16(b[lenField:])-3) }},
		{"entry length below header", func(b []byte) { put16(b, lenField-tableEntryHeader, 5) }},
		{"entry length beyond table", func(b []byte) { put16(b, lenField-tableEntryHeader, 0x1000) }},
		{"duplicate entry", func(b []byte) {
			g := guidSEVHashTable
			i := bytes.LastIndex(b, guidSEVESReset[:])
			copy(b[i:], g[:])
		}},
		{"metadata offset beyond image", func(b []byte) {
			put32(b, entryDataOffset(t, b, guidSEVMetadata), uint32(len(b)+1))
		}},
		{"metadata offset too close to end", func(b []byte) {
			put32(b, entryDataOffset(t, b, guidSEVMetadata), 8)
		}},
		{"metadata signature", func(b []byte) { copy(b[md:], "BSEV") }},
		{"metadata version", func(b []byte) { put32(b, md+8, 2) }},
		{"metadata length below header", func(b []byte) { put32(b, md+4, 8) }},
		{"metadata length beyond image", func(b []byte) { put32(b, md+4, 0x100000) }},
		{"too many sections", func(b []byte) { put32(b, md+12, 0x40000000) }},
		{"section GPA unaligned", func(b []byte) { put32(b, md+16, 0x800010) }},
		{"section size unaligned", func(b []byte) { put32(b, md+16+4, 0x9001) }},
		{"section past 4 GiB", func(b []byte) { put32(b, md+16, 0xfffff000); put32(b, md+16+4, 0x2000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(base)
			tt.edit(b)
			if fw, err := ParseOVMF(b); !errors.Is(err, ErrMalformedOVMF) {
				t.Fatalf("ParseOVMF() = %+v, %v; want %v", fw, err, ErrMalformedOVMF)
			}
		})
	}
}

// tableEntry is a footer table entry for synthImage.
type tableEntry struct {
	g    guid
	data []byte
}

// synthImage builds a one-page image whose footer table holds entries.
func synthImage(entries ...tableEntry) []byte {
	var table []byte
	for _, e := range entries {
		table = append(table, e.data...)
		table = binary.LittleEndian.AppendUint16(table, uint16(len(e.data)+tableEntryHeader))
		table = append(table, e.g[:]...)
	}
	table = binary.LittleEndian.AppendUint16(table, uint16(len(table)+tableEntryHeader))
	table = append(table, guidFooterTable[:]...)
	img := make([]byte, pageSize)
	copy(img[pageSize-footerReserved-len(table):], table)
	return img
}

func TestShortTableEntries(t *testing.T) {
	short := []byte{1, 2}
	if _, err := ParseOVMF(synthImage(tableEntry{guidSEVMetadata, short})); !errors.Is(err, ErrMalformedOVMF) {
		t.Errorf("short metadata entry: error = %v, want %v", err, ErrMalformedOVMF)
	}
	fw, err := ParseOVMF(synthImage(
		tableEntry{guidSEVESReset, short},
		tableEntry{guidSEVHashTable, short},
		tableEntry{guidSVSMInfo, short},
	))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.SEVESResetEIP(); !errors.Is(err, ErrMalformedOVMF) {
		t.Errorf("SEVESResetEIP() error = %v, want %v", err, ErrMalformedOVMF)
	}
	if _, _, err := fw.SEVHashesTableGPA(); !errors.Is(err, ErrMalformedOVMF) {
		t.Errorf("SEVHashesTableGPA() error = %v, want %v", err, ErrMalformedOVMF)
	}
	if _, err := fw.svsmResetEIP(); !errors.Is(err, ErrMalformedOVMF) {
		t.Errorf("svsmResetEIP() error = %v, want %v", err, ErrMalformedOVMF)
	}
	// A well-formed synthetic image parses to the values it holds.
	fw, err = ParseOVMF(synthImage(
		tableEntry{guidSEVESReset, []byte{0x04, 0xb0, 0x80, 0x00}},
		tableEntry{guidSEVHashTable, []byte{0x00, 0x0c, 0x81, 0x00, 0x00, 0x04, 0x00, 0x00}},
	))
	if err != nil {
		t.Fatal(err)
	}
	if eip, err := fw.SEVESResetEIP(); err != nil || eip != 0x80b004 {
		t.Errorf("SEVESResetEIP() = %#x, %v", eip, err)
	}
	if gpa, ok, err := fw.SEVHashesTableGPA(); err != nil || !ok || gpa != 0x810c00 {
		t.Errorf("SEVHashesTableGPA() = %#x, %v, %v", gpa, ok, err)
	}
}

func TestParseOVMFWithoutFooter(t *testing.T) {
	for _, n := range []int{0, 1, 49, 50, pageSize} {
		fw, err := ParseOVMF(make([]byte, n))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(fw.Sections()) != 0 {
			t.Errorf("%d bytes: sections %v", n, fw.Sections())
		}
		if _, err := fw.SEVESResetEIP(); !errors.Is(err, ErrMissingMetadata) {
			t.Errorf("%d bytes: SEVESResetEIP() error = %v", n, err)
		}
		if _, ok, err := fw.SEVHashesTableGPA(); ok || err != nil {
			t.Errorf("%d bytes: SEVHashesTableGPA() = %v, %v", n, ok, err)
		}
	}
}

func TestUnknownSectionType(t *testing.T) {
	b := readFixture(t, "ovmf_AmdSev_suffix.bin")
	_, md := footerOffsets(t, b)
	binary.LittleEndian.PutUint32(b[md+16+8:], 0x7) // first section's type
	if _, err := ParseOVMF(b); err != nil {
		t.Fatalf("parse must accept unknown types (SEV and SEV-ES do not use them): %v", err)
	}
	o := Options{Mode: ModeSNP, VCPUs: 1, OVMF: b, GuestFeatures: 1}
	if _, err := LaunchDigest(o); !errors.Is(err, ErrMalformedOVMF) {
		t.Errorf("SNP with unknown section type: error = %v, want %v", err, ErrMalformedOVMF)
	}
	o.Mode = ModeSEVES
	if _, err := LaunchDigest(o); err != nil {
		t.Errorf("SEV-ES with unknown section type: %v", err)
	}
}

// FuzzParseOVMF feeds arbitrary images to the footer and metadata parser,
// and, for small enough results, through the SNP measurement that walks
// the sections. Nothing may panic, and whatever parses must be consistent.
func FuzzParseOVMF(f *testing.F) {
	for _, name := range []string{"ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin", "svsm_ovmf.fd", "svsm.bin"} {
		b := readFixture(f, name)
		// The footer and metadata sit in the last page of each image.
		f.Add(b[len(b)-pageSize:])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		fw, err := ParseOVMF(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedOVMF) {
				t.Fatalf("error %v does not wrap ErrMalformedOVMF", err)
			}
			return
		}
		if fw.GPA()+uint64(fw.Size()) != fourGiB {
			t.Fatalf("image at %#x+%#x does not end at 4 GiB", fw.GPA(), fw.Size())
		}
		var total uint64
		for _, s := range fw.Sections() {
			if s.GPA%pageSize != 0 || s.Size%pageSize != 0 || uint64(s.GPA)+uint64(s.Size) > fourGiB {
				t.Fatalf("parser accepted section %+v", s)
			}
			total += uint64(s.Size)
		}
		_, _ = fw.SEVESResetEIP()
		_, _, _ = fw.SEVHashesTableGPA()
		_, _ = fw.svsmResetEIP()
		// Walking gigabytes of sections page by page is correct but too
		// slow for a fuzz iteration.
		if total > 64<<20 {
			return
		}
		for _, mode := range []Mode{ModeSEV, ModeSEVES, ModeSNP} {
			_, _ = LaunchDigest(Options{
				Mode: mode, VCPUs: 2, OVMF: data, GuestFeatures: 1,
				DirectBoot: &DirectBoot{Cmdline: "x"},
			})
		}
	})
}
