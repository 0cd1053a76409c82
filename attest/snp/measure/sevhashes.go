package measure

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// DirectBoot describes a kernel that QEMU loads itself (-kernel, -initrd,
// -append) instead of the firmware reading it from disk. With
// kernel-hashes=on QEMU writes the SHA-256 of each into the SEV hashes
// table, which is measured with the firmware, and the firmware refuses a
// kernel that does not match. Each blob is given either as bytes or as a
// path to read, not both.
type DirectBoot struct {
	Kernel     []byte
	KernelPath string
	// Initrd may be absent: QEMU then measures the hash of zero bytes.
	Initrd     []byte
	InitrdPath string
	// Cmdline is the kernel command line as passed to -append. It is
	// measured NUL-terminated; an empty command line is a single NUL.
	Cmdline string
}

// GUIDs of the SEV hashes table and its entries (QEMU target/i386/sev.c,
// OvmfPkg/AmdSev/BlobVerifierLibSevHashes).
var (
	guidHashTableHeader = mustGUID("9438d606-4f22-4cc9-b479-a793d411fd21")
	guidHashKernel      = mustGUID("4de79437-abd2-427f-b835-d5b172d2045b")
	guidHashInitrd      = mustGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
	guidHashCmdline     = mustGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
)

const (
	hashEntrySize = 16 + 2 + sha256.Size      // GUID, length, hash
	hashTableLen  = 16 + 2 + 3*hashEntrySize  // header + 3 entries = 168
	hashTableSize = (hashTableLen + 15) &^ 15 // QEMU pads it to 16 bytes
)

// sevHashesTable builds the table exactly as QEMU lays it out, padding
// included, because SEV and SEV-ES measure these bytes directly and SNP
// measures the page that holds them.
func sevHashesTable(db *DirectBoot) ([]byte, error) {
	kernel, err := hashBlob(db.Kernel, db.KernelPath, "kernel")
	if err != nil {
		return nil, err
	}
	initrd, err := hashBlob(db.Initrd, db.InitrdPath, "initrd")
	if err != nil {
		return nil, err
	}
	cmdline := sha256.Sum256(append([]byte(db.Cmdline), 0))

	t := make([]byte, hashTableSize)
	copy(t, guidHashTableHeader[:])
	binary.LittleEndian.PutUint16(t[16:], hashTableLen)
	off := 18
	// QEMU's order: command line, initrd, kernel.
	for _, e := range []struct {
		g guid
		h [sha256.Size]byte
	}{{guidHashCmdline, cmdline}, {guidHashInitrd, initrd}, {guidHashKernel, kernel}} {
		copy(t[off:], e.g[:])
		binary.LittleEndian.PutUint16(t[off+16:], hashEntrySize)
		copy(t[off+18:], e.h[:])
		off += hashEntrySize
	}
	return t, nil
}

// sevHashesPage places the table at its offset within an otherwise zero
// page, which is what SNP measures in the SNP_KERNEL_HASHES section.
func sevHashesPage(table []byte, offset uint32) ([]byte, error) {
	if uint64(offset)+uint64(len(table)) > pageSize {
		return nil, fmt.Errorf("%w: SEV hashes table at page offset %#x crosses a page", ErrMalformedOVMF, offset)
	}
	page := make([]byte, pageSize)
	copy(page[offset:], table)
	return page, nil
}

// hashBlob hashes data, or the file at path, streaming so that a large
// initrd need not be held in memory.
func hashBlob(data []byte, path, what string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if path == "" {
		return sha256.Sum256(data), nil
	}
	if len(data) != 0 {
		return sum, fmt.Errorf("%w: both %s bytes and %s path given", ErrInvalidOptions, what, what)
	}
	f, err := os.Open(path)
	if err != nil {
		return sum, fmt.Errorf("open %s: %w", what, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("read %s: %w", what, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}
