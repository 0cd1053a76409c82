package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// bzImage wraps a compressed kernel payload in a synthetic bzImage: boot
// sector and setup sectors, protected-mode code before the payload, the
// payload with its le32 size trailer, and code after it.
func bzImage(t *testing.T, setupSects byte, version uint16, compressed []byte, size int) []byte {
	t.Helper()
	sects := int(setupSects)
	if sects == 0 {
		sects = 4
	}
	const pmPrefix = 0x3c8
	img := make([]byte, (sects+1)*512+pmPrefix)
	img[offSetupSects] = setupSects
	copy(img[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[offVersion:], version)
	p := binary.LittleEndian.AppendUint32(append([]byte(nil), compressed...), uint32(size))
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], pmPrefix)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(p)))
	img = append(img, p...)
	return append(img, bytes.Repeat([]byte{0xcc}, 100)...)
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func TestParseSetupHeader(t *testing.T) {
	tests := []struct {
		name      string
		img       []byte
		wantSects int
		wantErr   bool
	}{
		{name: "setup_sects 27", img: bzImage(t, 27, 0x020f, []byte{1}, 1), wantSects: 27},
		{name: "setup_sects 0 means 4", img: bzImage(t, 0, 0x020f, []byte{1}, 1), wantSects: 4},
		{name: "protocol too old", img: bzImage(t, 4, 0x0207, []byte{1}, 1), wantErr: true},
		{name: "no magic", img: make([]byte, 4096), wantErr: true},
		{name: "truncated", img: []byte("MZ"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseSetupHeader(tt.img)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSetupHeader() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && h.SetupSects != tt.wantSects {
				t.Errorf("SetupSects = %d, want %d", h.SetupSects, tt.wantSects)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	compressed := []byte("compressed-kernel")
	img := bzImage(t, 13, 0x020f, compressed, 1234)
	p, err := payload(img)
	if err != nil {
		t.Fatal(err)
	}
	want := binary.LittleEndian.AppendUint32(append([]byte(nil), compressed...), 1234)
	if !bytes.Equal(p, want) {
		t.Errorf("payload() = %q, want %q", p, want)
	}

	// A payload_length running past the end of the file is rejected.
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(img)))
	if _, err := payload(img); err == nil {
		t.Error("payload() accepted a payload past the end of the image")
	}
}

func TestVmlinux(t *testing.T) {
	elfPVH := fakeVmlinux(t, true)
	elfNoPVH := fakeVmlinux(t, false)
	tests := []struct {
		name    string
		img     []byte
		wantErr bool
	}{
		{name: "gzip", img: bzImage(t, 27, 0x020f, gzipBytes(t, elfPVH), len(elfPVH))},
		{name: "zstd", img: bzImage(t, 27, 0x020f, zstdBytes(t, elfPVH), len(elfPVH))},
		{name: "no PVH note", img: bzImage(t, 27, 0x020f, gzipBytes(t, elfNoPVH), len(elfNoPVH)), wantErr: true},
		{name: "size trailer mismatch", img: bzImage(t, 27, 0x020f, gzipBytes(t, elfPVH), len(elfPVH)+1), wantErr: true},
		{name: "not an ELF", img: bzImage(t, 27, 0x020f, gzipBytes(t, []byte("not a kernel")), 12), wantErr: true},
		{name: "corrupt gzip", img: bzImage(t, 27, 0x020f, gzipBytes(t, elfPVH)[:40], len(elfPVH)), wantErr: true},
		{name: "bzip2 unsupported", img: bzImage(t, 27, 0x020f, []byte("BZh91AY&SY"), 10), wantErr: true},
		{name: "unknown magic", img: bzImage(t, 27, 0x020f, []byte("????????"), 8), wantErr: true},
	}
	if _, err := exec.LookPath("xz"); err == nil {
		// Compressed as the kernel build does: x86 BCJ filter, CRC32 check.
		xz, err := runFilter(context.Background(), elfPVH, "xz", "-c", "--format=xz", "--check=crc32", "--x86", "--lzma2=preset=6")
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name    string
			img     []byte
			wantErr bool
		}{name: "xz with BCJ", img: bzImage(t, 27, 0x020f, xz, len(elfPVH))}, struct {
			name    string
			img     []byte
			wantErr bool
		}{
			// xz(1) fails on bytes after the stream, but the whole ELF
			// came out: accepted.
			name: "xz with trailing bytes", img: bzImage(t, 27, 0x020f, append(xz, "JUNK"...), len(elfPVH)),
		})
	} else {
		t.Log("xz not installed; xz payload case not run")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Vmlinux(context.Background(), tt.img)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Vmlinux() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				t.Logf("error (expected): %v", err)
			} else if !bytes.Equal(got, elfPVH) {
				t.Errorf("Vmlinux() returned %d bytes that differ from the %d-byte ELF", len(got), len(elfPVH))
			}
		})
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	tests := []struct {
		name  string
		notes []byte
		want  bool
	}{
		{"only note", note("Xen", 18, []byte{1, 2, 3, 4}), true},
		{"after others", append(note("GNU", 3, make([]byte, 20)), note("Xen", 18, []byte{1, 2, 3, 4})...), true},
		{"wrong type", note("Xen", 17, []byte{1}), false},
		{"wrong owner", note("Xe", 18, []byte{1}), false},
		{"truncated", note("Xen", 18, []byte{1, 2, 3, 4})[:14], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasNote(tt.notes, "Xen", 18); got != tt.want {
				t.Errorf("hasNote() = %v, want %v", got, tt.want)
			}
		})
	}
}
