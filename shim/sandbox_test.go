package shim

import (
	"errors"
	"testing"

	"github.com/sccontainers/scc/vmm/image"
	"github.com/sccontainers/scc/vmm/image/imagetest"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

// A sandbox's VM boots the image's kernel its firmware can start: vmlinux
// with qboot, vmlinuz with UEFI firmware; templates key on that kernel's
// digest.
func TestGuestImageKernelByFirmware(t *testing.T) {
	ovmf, qboot, err := vmmtest.WriteFirmware(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := imagetest.Write(dir, []byte("initrd"), "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	for firmware, want := range map[string]image.File{qboot: m.Kernel, ovmf: m.EFIKernel} {
		cfg := DefaultConfig()
		cfg.GuestDir, cfg.VM.Firmware = dir, firmware
		g, err := guestImage(cfg)
		if err != nil {
			t.Fatalf("firmware %s: %v", firmware, err)
		}
		if g.kernel != want.Path || g.kernelSHA256 != want.SHA256 || !g.snapshottable {
			t.Errorf("firmware %s: kernel %s sha256:%s, snapshottable %v; want %s sha256:%s", firmware, g.kernel, g.kernelSHA256, g.snapshottable, want.Path, want.SHA256)
		}
	}

	if err := imagetest.AsVersion1(dir); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.GuestDir, cfg.VM.Firmware = dir, ovmf
	if _, err := guestImage(cfg); !errors.Is(err, image.ErrNoEFIKernel) {
		t.Errorf("version 1 image with OVMF: err = %v, want %v", err, image.ErrNoEFIKernel)
	}
	cfg.VM.Firmware = qboot
	if _, err := guestImage(cfg); err != nil {
		t.Errorf("version 1 image with qboot: %v", err)
	}
}
