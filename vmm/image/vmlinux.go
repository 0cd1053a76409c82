package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/klauspost/compress/zstd"
)

// Offsets in the x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	setupHeaderEnd   = 0x250
	// payload_offset and payload_length exist from boot protocol 2.08.
	minPayloadVersion = 0x0208
)

// xenElfnotePhys32Entry is the ELF note type holding the 32-bit PVH entry
// point; QEMU's -kernel boots an ELF vmlinux only through it.
const xenElfnotePhys32Entry = 18

// setupHeader is the part of a bzImage setup header that locates the
// compressed kernel.
type setupHeader struct {
	SetupSects    int
	Version       uint16
	PayloadOffset uint32
	PayloadLength uint32
}

// parseSetupHeader reads the setup header of a bzImage.
func parseSetupHeader(bz []byte) (setupHeader, error) {
	if len(bz) < setupHeaderEnd {
		return setupHeader{}, fmt.Errorf("bzImage too short: %d bytes", len(bz))
	}
	if string(bz[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return setupHeader{}, errors.New("not a bzImage: no HdrS setup header")
	}
	h := setupHeader{
		SetupSects:    int(bz[offSetupSects]),
		Version:       binary.LittleEndian.Uint16(bz[offVersion:]),
		PayloadOffset: binary.LittleEndian.Uint32(bz[offPayloadOffset:]),
		PayloadLength: binary.LittleEndian.Uint32(bz[offPayloadLength:]),
	}
	if h.SetupSects == 0 {
		h.SetupSects = 4 // as the boot protocol says for old kernels
	}
	if h.Version < minPayloadVersion {
		return setupHeader{}, fmt.Errorf("boot protocol %d.%02d has no payload fields (need 2.08+)", h.Version>>8, h.Version&0xff)
	}
	return h, nil
}

// payload returns the compressed kernel inside a bzImage: it starts
// payload_offset bytes into the protected-mode code, which follows the
// boot sector and setup_sects sectors.
func payload(bz []byte) ([]byte, error) {
	h, err := parseSetupHeader(bz)
	if err != nil {
		return nil, err
	}
	start := uint64(h.SetupSects+1)*512 + uint64(h.PayloadOffset)
	end := start + uint64(h.PayloadLength)
	if h.PayloadLength == 0 || end > uint64(len(bz)) {
		return nil, fmt.Errorf("payload [%d, %d) outside the %d-byte bzImage", start, end, len(bz))
	}
	return bz[start:end], nil
}

// compression names a payload compression format.
type compression string

const (
	compGzip compression = "gzip"
	compXZ   compression = "xz"
	compZstd compression = "zstd"
	compLZMA compression = "lzma"
	compBz2  compression = "bzip2"
	compLZ4  compression = "lz4"
	compLZO  compression = "lzo"
)

// sniff identifies a compression format by its magic bytes.
func sniff(b []byte) (compression, error) {
	magics := []struct {
		magic []byte
		c     compression
	}{
		{[]byte{0x1f, 0x8b}, compGzip},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, compXZ},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, compZstd},
		{[]byte{0x5d, 0x00, 0x00}, compLZMA},
		{[]byte("BZh"), compBz2},
		{[]byte{0x02, 0x21, 0x4c, 0x18}, compLZ4},
		{[]byte{0x89, 'L', 'Z', 'O'}, compLZO},
	}
	for _, m := range magics {
		if bytes.HasPrefix(b, m.magic) {
			return m.c, nil
		}
	}
	n := min(len(b), 8)
	return "", fmt.Errorf("unknown compression (magic % x)", b[:n])
}

// Vmlinux returns the uncompressed ELF kernel inside a bzImage, for PVH
// boot with QEMU's -kernel. xz and lzma payloads are decoded with xz(1):
// Debian compresses with the x86 BCJ filter, which Go xz decoders lack.
func Vmlinux(ctx context.Context, bz []byte) ([]byte, error) {
	p, err := payload(bz)
	if err != nil {
		return nil, fmt.Errorf("locate kernel payload: %w", err)
	}
	c, err := sniff(p)
	if err != nil {
		return nil, fmt.Errorf("kernel payload: %w", err)
	}
	// The kernel build appends the uncompressed size (le32) to every
	// payload; it is not part of the compressed stream.
	if len(p) < 4 {
		return nil, errors.New("kernel payload too short")
	}
	size := binary.LittleEndian.Uint32(p[len(p)-4:])
	stream := p[:len(p)-4]

	out, err := decompress(ctx, c, stream)
	if err != nil {
		// xz(1) may complain about the end of a stream it fully decoded;
		// a complete, well-formed ELF of the announced size is what counts.
		if checkVmlinux(out, size) != nil {
			return nil, fmt.Errorf("decompress %s kernel payload: %w", c, err)
		}
	}
	if err := checkVmlinux(out, size); err != nil {
		return nil, fmt.Errorf("decompressed %s kernel payload: %w", c, err)
	}
	return out, nil
}

func decompress(ctx context.Context, c compression, stream []byte) ([]byte, error) {
	switch c {
	case compGzip:
		zr, err := gzip.NewReader(bytes.NewReader(stream))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return io.ReadAll(zr)
	case compZstd:
		zr, err := zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case compXZ:
		return runFilter(ctx, stream, "xz", "-dc", "-T1")
	case compLZMA:
		return runFilter(ctx, stream, "xz", "-dc", "--format=lzma")
	default:
		return nil, fmt.Errorf("%s payloads are not supported (use a gzip, xz or zstd kernel)", c)
	}
}

// runFilter pipes in through an external command and returns its output,
// even when the command fails, so the caller can judge it.
func runFilter(ctx context.Context, in []byte, name string, args ...string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// checkVmlinux checks that b is a whole x86-64 ELF kernel of the size the
// bzImage announced, bootable through the PVH entry point.
func checkVmlinux(b []byte, size uint32) error {
	if uint32(len(b)) != size {
		return fmt.Errorf("got %d bytes, the bzImage announces %d", len(b), size)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("ELF is %v %v, want ELFCLASS64 EM_X86_64", f.Class, f.Machine)
	}
	var loads int
	var pvh bool
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if p.Off+p.Filesz > uint64(len(b)) {
				return fmt.Errorf("PT_LOAD segment at %#x runs past the end of the file", p.Off)
			}
			loads++
		case elf.PT_NOTE:
			notes, err := io.ReadAll(p.Open())
			if err != nil {
				return fmt.Errorf("read PT_NOTE segment: %w", err)
			}
			pvh = pvh || hasNote(notes, "Xen", xenElfnotePhys32Entry)
		}
	}
	if loads == 0 {
		return errors.New("no PT_LOAD segment")
	}
	if !pvh {
		return errors.New("no PVH entry note: the kernel must be built with CONFIG_PVH=y to boot with -kernel")
	}
	return nil
}

// hasNote reports whether an ELF note segment holds a note of the given
// owner name and type. Notes are namesz, descsz, type (le32 each), then the
// NUL-terminated name and the descriptor, each padded to four bytes.
func hasNote(notes []byte, name string, typ uint32) bool {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(notes) >= 12 {
		namesz := uint64(binary.LittleEndian.Uint32(notes[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(notes[4:]))
		ntype := binary.LittleEndian.Uint32(notes[8:])
		end := 12 + align(namesz) + align(descsz)
		if end > uint64(len(notes)) {
			return false
		}
		owner := notes[12 : 12+namesz]
		if ntype == typ && string(bytes.TrimRight(owner, "\x00")) == name {
			return true
		}
		notes = notes[end:]
	}
	return false
}
