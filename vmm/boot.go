package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// KernelFormat is the kind of image a kernel file holds. It decides which
// firmware can start the kernel QEMU is given with -kernel.
type KernelFormat string

const (
	// KernelUnknown is a file none of the formats below recognise.
	KernelUnknown KernelFormat = "unknown"
	// KernelPVH is an uncompressed ELF vmlinux with a PVH entry note. QEMU
	// loads it into guest memory itself and enters it through its pvh.bin
	// option ROM, which qboot and SeaBIOS run and UEFI firmware does not.
	// QEMU builds no SEV kernel hashes for it.
	KernelPVH KernelFormat = "pvh"
	// KernelBzImage is a bzImage without an EFI stub: qboot and SeaBIOS
	// start it through the Linux boot protocol; UEFI firmware built for
	// confidential guests does not.
	KernelBzImage KernelFormat = "bzimage"
	// KernelEFI is a bzImage whose EFI stub also makes it a PE/COFF image
	// (Documentation/admin-guide/efi-stub.rst). OVMF and TDVF start it as a
	// UEFI application, read through QemuKernelLoaderFs from the -kernel
	// blob; every firmware scc uses can start it.
	KernelEFI KernelFormat = "efi"
)

// ErrKernelFormat means the kernel is of a format the VM's firmware cannot
// start.
var ErrKernelFormat = errors.New("kernel format does not suit the firmware")

// headerLen is how much of a kernel or firmware file the format checks
// read: the bzImage setup header ends before 0x300 and the PE header's
// offset is kept within the first sectors.
const headerLen = 4096

// Offsets in the x86 boot sector and setup header
// (Documentation/arch/x86/boot.rst) and in the DOS/PE headers that an EFI
// stub puts over the boot sector.
const (
	offBootFlag  = 0x1fe // 0xAA55
	offHdrMagic  = 0x202 // "HdrS"
	offPEPointer = 0x3c  // e_lfanew: offset of "PE\0\0"
	peMachineX64 = 0x8664
)

// KernelFormatOf identifies the kernel format from the start of a kernel
// file (at least its first 1024 bytes).
func KernelFormatOf(header []byte) KernelFormat {
	if bytes.HasPrefix(header, []byte("\x7fELF")) {
		return KernelPVH
	}
	if len(header) < offHdrMagic+4 || binary.LittleEndian.Uint16(header[offBootFlag:]) != 0xaa55 ||
		string(header[offHdrMagic:offHdrMagic+4]) != "HdrS" {
		return KernelUnknown
	}
	if !bytes.HasPrefix(header, []byte("MZ")) {
		return KernelBzImage
	}
	pe := int(binary.LittleEndian.Uint32(header[offPEPointer:]))
	if pe < offPEPointer+4 || pe+6 > len(header) || string(header[pe:pe+4]) != "PE\x00\x00" ||
		binary.LittleEndian.Uint16(header[pe+4:]) != peMachineX64 {
		return KernelBzImage
	}
	return KernelEFI
}

// ReadKernelFormat identifies the format of the kernel file at path.
func ReadKernelFormat(path string) (KernelFormat, error) {
	h, err := readHeader(path)
	if err != nil {
		return "", fmt.Errorf("read kernel: %w", err)
	}
	return KernelFormatOf(h), nil
}

// IsUEFIFirmware reports whether the firmware image at path is UEFI firmware
// (OVMF, TDVF): its first firmware volume header (PI specification,
// EFI_FIRMWARE_VOLUME_HEADER) carries the "_FVH" signature at offset 40.
// qboot and SeaBIOS images start with code. An empty path is the default
// firmware, qboot.
func IsUEFIFirmware(path string) (bool, error) {
	if path == "" {
		path = DefaultFirmware
	}
	h, err := readHeader(path)
	if err != nil {
		return false, fmt.Errorf("read firmware: %w", err)
	}
	return len(h) >= 44 && string(h[40:44]) == "_FVH", nil
}

// UEFIBoot reports whether c's firmware is UEFI firmware, which starts only
// kernels with an EFI stub (KernelEFI). A confidential VM always boots
// through its measured UEFI firmware (OVMF, TDVF, or the one in an IGVM
// file); an ordinary VM does when Config.Firmware is UEFI firmware.
func (c Config) UEFIBoot() (bool, error) {
	if c.TEE.Confidential() {
		return true, nil
	}
	return IsUEFIFirmware(c.Firmware)
}

// checkKernelFormat requires an EFI stub in the kernel of a VM that boots
// through UEFI firmware. A missing file is checkFile's to report.
func (c Config) checkKernelFormat(errs *[]error) {
	uefi, err := c.UEFIBoot()
	if err != nil || !uefi || c.Kernel == "" {
		return
	}
	f, err := ReadKernelFormat(c.Kernel)
	if err != nil || f == KernelEFI {
		return
	}
	why := "the firmware " + c.Firmware + " is UEFI firmware"
	if c.TEE.Confidential() {
		why = string(c.TEE.Type) + " VMs boot through their measured UEFI firmware"
	}
	*errs = append(*errs, fmt.Errorf("kernel %s: %w: its format is %s; %s, which starts only a bzImage with an EFI stub (the guest image's vmlinuz)",
		c.Kernel, ErrKernelFormat, f, why))
}

func readHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := make([]byte, headerLen)
	n, err := io.ReadFull(f, h)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return h[:n], nil
}
