package measure

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

// Known answers. No TDVF image with a published MRTD could be obtained
// for the tests (see testdata/README.md), so these were computed outside
// this package by a separate program written from the TDX module
// specification's record layout (Python, hashlib over the concatenated
// records), and are checked here against a second, test-only rendering of
// the same specification (specMRTD).
var mrtdVectors = []struct {
	name  string
	image func(testing.TB) []byte
	order PageOrder
	want  string
}{
	{"synthetic/per-page", synthImage, OrderPerPage,
		"628f933a1518fbcf26339eddc01e5ba74d6e6141302f6917ac5809c76a2499d417b5197053c2841a1c25061b87ebfbb5"},
	{"synthetic/adds-first", synthImage, OrderAddsFirst,
		"b0984a4eccfffcd8c417e641b386bd4657205ace5d1dff526b55abc1a536c48f300968edb9e14775ed67c1e95a487c04"},
	{"debian-ovmf/per-page", debianImage, OrderPerPage,
		"4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47"},
	{"debian-ovmf/adds-first", debianImage, OrderAddsFirst,
		"acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1"},
}

func synthImage(testing.TB) []byte     { return synthTDVF(synthSections) }
func debianImage(tb testing.TB) []byte { return readFixture(tb, debianOVMF) }

func TestMRTDVectors(t *testing.T) {
	for _, v := range mrtdVectors {
		t.Run(v.name, func(t *testing.T) {
			img := v.image(t)
			fw, err := ParseTDVF(img)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fw.MRTD(v.order)
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != v.want {
				t.Errorf("MRTD(%v) = %s, want %s", v.order, h, v.want)
			}
			if ref := specMRTD(t, img, v.order); !bytes.Equal(got, ref) {
				t.Errorf("MRTD(%v) = %x, the specification's stream gives %x", v.order, got, ref)
			}
		})
	}
}

// specMRTD renders the TDX module's MRTD input as one byte stream and
// hashes it at once. It reads the metadata itself, with fixed offsets and
// no validation, so that it shares no code with the package.
func specMRTD(t *testing.T, img []byte, order PageOrder) []byte {
	t.Helper()
	// The footer table ends 32 bytes before the end; the TDX metadata
	// offset entry is found by its GUID text in on-disk order.
	i := bytes.Index(img, []byte{0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2})
	if i < 6 {
		t.Fatal("no TDX metadata offset GUID")
	}
	desc := len(img) - int(binary.LittleEndian.Uint32(img[i-6:]))
	n := int(binary.LittleEndian.Uint32(img[desc+12:]))
	var stream []byte
	record := func(tag string, gpa uint64) {
		r := make([]byte, 128)
		copy(r, tag)
		binary.LittleEndian.PutUint64(r[16:], gpa)
		stream = append(stream, r...)
	}
	for s := range n {
		e := img[desc+16+32*s:]
		off := uint64(binary.LittleEndian.Uint32(e))
		addr := binary.LittleEndian.Uint64(e[8:])
		size := binary.LittleEndian.Uint64(e[16:])
		typ := binary.LittleEndian.Uint32(e[24:])
		extend := binary.LittleEndian.Uint32(e[28:])&1 == 1
		content := make([]byte, size)
		if typ == 0 || typ == 1 {
			copy(content, img[off:off+size])
		}
		extendPage := func(p uint64) {
			for c := uint64(0); c < 4096; c += 256 {
				record("MR.EXTEND", addr+p*4096+c)
				stream = append(stream, content[p*4096+c:p*4096+c+256]...)
			}
		}
		for p := range size / 4096 {
			record("MEM.PAGE.ADD", addr+p*4096)
			if extend && order == OrderPerPage {
				extendPage(p)
			}
		}
		if extend && order == OrderAddsFirst {
			for p := range size / 4096 {
				extendPage(p)
			}
		}
	}
	sum := sha512.Sum384(stream)
	return sum[:]
}

// TestRecordLayout pins the bytes of the two records against the
// specification's tables, written out by hand.
func TestRecordLayout(t *testing.T) {
	var got bytes.Buffer
	m := &mrtd{h: writerHash{&got}}
	m.pageAdd(0xffffb000)
	m.mrExtend(0xffffb100, bytes.Repeat([]byte{0xab}, 256))
	zero := func(n int) string { return string(bytes.Repeat([]byte("00"), n)) }
	want := "4d454d2e504147452e414444" + zero(4) + // "MEM.PAGE.ADD", padded to 16
		"00b0ffff00000000" + zero(104) + // GPA, zeros to 128
		"4d522e455854454e44" + zero(7) + // "MR.EXTEND", padded to 16
		"00b1ffff00000000" + zero(104) +
		string(bytes.Repeat([]byte("ab"), 256))
	if h := hex.EncodeToString(got.Bytes()); h != want {
		t.Errorf("records:\n got %s\nwant %s", h, want)
	}
}

// writerHash records what the mrtd hashes, for TestRecordLayout.
type writerHash struct{ *bytes.Buffer }

func (writerHash) Sum([]byte) []byte { return nil }
func (writerHash) Reset()            {}
func (writerHash) Size() int         { return 0 }
func (writerHash) BlockSize() int    { return recordSize }

// TestMRTDInputs checks what MRTD depends on: firmware code and every
// section's place, but not the content of pages that are only added.
func TestMRTDInputs(t *testing.T) {
	base := synthTDVF(synthSections)
	want := mustMRTD(t, base)
	tests := []struct {
		name    string
		edit    func([]byte)
		changes bool
	}{
		{"BFV byte", func(b []byte) { b[0x1234] ^= 1 }, true},
		{"CFV byte (added, not extended)", func(b []byte) { b[0x10] ^= 1 }, false},
		{"TD HOB address", func(b []byte) { setSection(b, 3, 8, 0x80a000) }, true},
		{"TempMem size", func(b []byte) { setSection(b, 2, 16, 0x3000) }, true},
		{"TempMem gains MR.EXTEND", func(b []byte) { setSection32(b, 2, 28, uint32(AttrMRExtend)) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(base)
			tt.edit(b)
			got := mustMRTD(t, b)
			if changed := !bytes.Equal(got, want); changed != tt.changes {
				t.Errorf("MRTD changed = %v, want %v", changed, tt.changes)
			}
		})
	}
}

// TestPageAugIgnored checks that a section marked PAGE.AUG is still added
// and measured like the rest, as QEMU hands it to KVM regardless.
func TestPageAugIgnored(t *testing.T) {
	secs := append([]synthSection(nil), synthSections...)
	secs[1].attrs = AttrPageAug
	secs[2].attrs = AttrPageAug | AttrMRExtend
	img := synthTDVF(secs)
	if got, want := mustMRTD(t, img), specMRTD(t, img, OrderPerPage); !bytes.Equal(got, want) {
		t.Errorf("MRTD = %x, want %x", got, want)
	}
}

func mustMRTD(t *testing.T, img []byte) []byte {
	t.Helper()
	fw, err := ParseTDVF(img)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fw.MRTD(OrderPerPage)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// setSection writes a uint64 field of section i of a synthetic image.
func setSection(img []byte, i, field int, v uint64) {
	binary.LittleEndian.PutUint64(img[len(img)-synthDescriptorBack+16+32*i+field:], v)
}

// setSection32 writes a uint32 field of section i of a synthetic image.
func setSection32(img []byte, i, field int, v uint32) {
	binary.LittleEndian.PutUint32(img[len(img)-synthDescriptorBack+16+32*i+field:], v)
}

// TestMRTDUnsupported checks the sections QEMU would not launch.
func TestMRTDUnsupported(t *testing.T) {
	tests := []struct {
		name string
		edit func([]synthSection) []synthSection
	}{
		{"one section", func(s []synthSection) []synthSection { return s[:1] }},
		{"PermMem", func(s []synthSection) []synthSection { s[2].typ = SectionPermMem; return s }},
		{"unknown type", func(s []synthSection) []synthSection { s[2].typ = 0x100; return s }},
		{"CFV without raw data", func(s []synthSection) []synthSection { s[1].rawSize = 0; return s }},
		{"TempMem with raw data", func(s []synthSection) []synthSection { s[2].rawSize = 0x10; return s }},
		{"TD HOB with raw data", func(s []synthSection) []synthSection { s[3].rawSize = 0x10; return s }},
		{"TD HOB measured", func(s []synthSection) []synthSection { s[3].attrs = AttrMRExtend; return s }},
		{"too much memory", func(s []synthSection) []synthSection { s[4].size = 2 << 30; return s }},
		{"BFV memory past the image", func(s []synthSection) []synthSection {
			s[0].size = 0x6000
			s[0].addr = 0xffff0000
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secs := tt.edit(append([]synthSection(nil), synthSections...))
			fw, err := ParseTDVF(synthTDVF(secs))
			if err != nil {
				t.Fatalf("ParseTDVF: %v", err)
			}
			if d, err := fw.MRTD(OrderPerPage); !errors.Is(err, ErrUnsupported) {
				t.Errorf("MRTD() = %x, %v; want %v", d, err, ErrUnsupported)
			}
		})
	}
	fw, err := ParseTDVF(synthTDVF(synthSections))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.MRTD(PageOrder(7)); err == nil {
		t.Error("MRTD(unknown order) succeeded")
	}
}

func BenchmarkMRTDDebianOVMF(b *testing.B) {
	fw, err := ParseTDVF(readFixture(b, debianOVMF))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(fw.data)))
	for b.Loop() {
		if _, err := fw.MRTD(OrderPerPage); err != nil {
			b.Fatal(err)
		}
	}
}
