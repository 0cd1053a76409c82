// Package vmmtest writes stand-in guest files for the tests of vmm and its
// users: small files of the formats vmm.KernelFormatOf and
// vmm.IsUEFIFirmware recognise, without a real kernel or firmware.
package vmmtest

import (
	"encoding/binary"
	"os"
	"path/filepath"
)

// EFIKernel returns the bytes of a stand-in bzImage with an EFI stub
// (vmm.KernelEFI): a boot sector with the DOS and PE signatures, a setup
// header of boot protocol 2.15, then body. Different bodies give files of
// different digests.
func EFIKernel(body []byte) []byte {
	b := make([]byte, 0x400, 0x400+len(body))
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40) // e_lfanew
	copy(b[0x40:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x44:], 0x8664) // IMAGE_FILE_MACHINE_AMD64
	b[0x1f1] = 1                                    // setup_sects
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	return append(b, body...)
}

// WriteEFIKernel writes EFIKernel(body) to path.
func WriteEFIKernel(path string, body []byte) error {
	return os.WriteFile(path, EFIKernel(body), 0o644)
}

// UEFIFirmware returns the bytes of a stand-in UEFI firmware image: 64 KiB
// starting with a firmware volume header signature ("_FVH" at offset 40).
func UEFIFirmware() []byte {
	b := make([]byte, 64<<10)
	copy(b[40:], "_FVH")
	return b
}

// WriteFirmware writes a stand-in UEFI firmware (OVMF.fd, UEFIFirmware)
// and a stand-in legacy BIOS (qboot.rom, 64 KiB of zeros) into dir and
// returns their paths.
func WriteFirmware(dir string) (uefi, bios string, err error) {
	uefi, bios = filepath.Join(dir, "OVMF.fd"), filepath.Join(dir, "qboot.rom")
	if err := os.WriteFile(uefi, UEFIFirmware(), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(bios, make([]byte, 64<<10), 0o644); err != nil {
		return "", "", err
	}
	return uefi, bios, nil
}
