package vmm

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm/vmmtest"
)

func TestKernelFormatOf(t *testing.T) {
	efi := vmmtest.EFIKernel([]byte("body"))
	edit := func(f func(b []byte)) []byte {
		b := append([]byte(nil), efi...)
		f(b)
		return b
	}
	tests := []struct {
		name   string
		header []byte
		want   KernelFormat
	}{
		{"efi stub", efi, KernelEFI},
		{"elf vmlinux", []byte("\x7fELF\x02\x01\x01\x00"), KernelPVH},
		{"bzImage without a PE header", edit(func(b []byte) { b[0] = 0 }), KernelBzImage},
		{"PE pointer past the header", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[0x3c:], 1<<20) }), KernelBzImage},
		{"PE pointer into the DOS header", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[0x3c:], 2) }), KernelBzImage},
		{"32-bit EFI stub", edit(func(b []byte) { binary.LittleEndian.PutUint16(b[0x44:], 0x14c) }), KernelBzImage},
		{"no boot flag", edit(func(b []byte) { b[0x1fe] = 0 }), KernelUnknown},
		{"no HdrS", edit(func(b []byte) { copy(b[0x202:], "xxxx") }), KernelUnknown},
		{"short file", efi[:0x100], KernelUnknown},
		{"empty", nil, KernelUnknown},
	}
	for _, tt := range tests {
		if got := KernelFormatOf(tt.header); got != tt.want {
			t.Errorf("%s: KernelFormatOf() = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// The files scc boots on this machine: Debian's kernel package and its
// firmware packages.
func TestFormatsOfRealFiles(t *testing.T) {
	kernels, _ := filepath.Glob("/var/cache/scc/kernel/x/boot/vmlinuz-*")
	for _, k := range kernels {
		if f, err := ReadKernelFormat(k); err != nil || f != KernelEFI {
			t.Errorf("ReadKernelFormat(%s) = %s, %v; want %s", k, f, err, KernelEFI)
		}
	}
	for path, want := range map[string]bool{
		"/usr/share/ovmf/OVMF.fd":       true,
		"/usr/share/OVMF/OVMF_CODE.fd":  true,
		"/usr/share/qemu/qboot.rom":     false,
		"/usr/share/seabios/bios.bin":   false,
		"/usr/share/qemu/bios-256k.bin": false,
	} {
		if _, err := os.Stat(path); err != nil {
			continue // the package is not installed
		}
		if got, err := IsUEFIFirmware(path); err != nil || got != want {
			t.Errorf("IsUEFIFirmware(%s) = %v, %v; want %v", path, got, err, want)
		}
	}
}

func TestUEFIBoot(t *testing.T) {
	dir := t.TempDir()
	ovmf, bios, err := vmmtest.WriteFirmware(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want bool
	}{
		{"legacy bios", Config{Firmware: bios}, false},
		{"ovmf", Config{Firmware: ovmf}, true},
		{"snp names no firmware here", Config{TEE: &TEEConfig{Type: TEESNP}}, true},
		{"tdx", Config{Firmware: bios, TEE: &TEEConfig{Type: TEETDX}}, true},
		{"none", Config{Firmware: bios, TEE: &TEEConfig{Type: TEENone}}, false},
	}
	for _, tt := range tests {
		if got, err := tt.cfg.UEFIBoot(); err != nil || got != tt.want {
			t.Errorf("%s: UEFIBoot() = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := (Config{Firmware: filepath.Join(dir, "missing.fd")}).UEFIBoot(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UEFIBoot() with a missing firmware: err = %v, want not-exist", err)
	}
}

// An ordinary VM may boot any kernel through qboot, but only a kernel with
// an EFI stub through OVMF.
func TestValidateKernelFormat(t *testing.T) {
	c := validConfig(t)
	pvh := filepath.Join(t.TempDir(), "vmlinux")
	mustWrite(pvh, "\x7fELF\x02\x01\x01\x00")
	c.Kernel = pvh
	if err := c.Validate(); err != nil {
		t.Fatalf("pvh kernel with a legacy bios: %v", err)
	}

	mustWrite(c.Firmware, string(vmmtest.UEFIFirmware()))
	err := c.Validate()
	if !errors.Is(err, ErrKernelFormat) || !strings.Contains(err.Error(), "format is pvh") || !strings.Contains(err.Error(), c.Firmware+" is UEFI firmware") {
		t.Fatalf("pvh kernel with OVMF: Validate() = %v, want %v naming the firmware", err, ErrKernelFormat)
	}

	if err := vmmtest.WriteEFIKernel(pvh, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("efi kernel with OVMF: %v", err)
	}
}
