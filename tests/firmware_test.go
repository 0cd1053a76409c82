package tests

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm/image"
)

// debianOVMF is Debian's OVMF (package ovmf, which make deps installs) in
// one file, as -bios takes it.
const debianOVMF = "/usr/share/ovmf/OVMF.fd"

// TestUEFIFirmwareBoot runs a container in a VM that boots through OVMF
// instead of qboot: the way every confidential VM boots, UEFI firmware
// starting the guest image's EFI kernel (vmlinuz) through its EFI stub,
// here in an ordinary VM under TCG. The agent answers as usual, and the
// guest kernel's command line carries the "initrd=initrd" argument that
// OVMF's loader adds for the EFI stub (the argument a TD's RTMR[2]
// measures), which a qboot boot of the same image lacks. (The guest's
// /sys/firmware/efi would say the same, but containers see /sys/firmware
// masked.)
func TestUEFIFirmwareBoot(t *testing.T) {
	requireEnv(t)
	if _, err := os.Stat(debianOVMF); err != nil {
		if os.Getenv("SCC_E2E_REQUIRED") != "" {
			t.Fatalf("%v (make deps installs ovmf)", err)
		}
		t.Skipf("%v (make deps installs ovmf)", err)
	}
	m, err := image.Load(guestDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.KernelFor(true); err != nil {
		t.Fatalf("guest image %s: %v", guestDir(), err)
	}
	ctx := testContext(t)
	guest := func(id, config string) (cmdline, release string) {
		t.Helper()
		args := []string{"run", "--rm", "--runtime", runtimeName}
		if config != "" {
			args = append(args, "--runtime-config-path", config)
		}
		args = append(args, imageRef, id, "sh", "-c", "cat /proc/cmdline; uname -r")
		stdout, stderr, code := ctr(t, ctx, "", args...)
		if code != 0 {
			t.Fatalf("ctr run %s: exit code %d: %s", id, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("ctr run %s printed %q", id, stdout)
		}
		return lines[0], lines[1]
	}

	cmdline, release := guest("uefi-boot", writeConfig(t, "uefi", fmt.Sprintf("firmware = %q\n", debianOVMF)))
	if release != m.KernelRelease {
		t.Errorf("guest kernel %s, want the image's %s", release, m.KernelRelease)
	}
	if !strings.HasPrefix(cmdline, m.Cmdline) || !slices.Contains(strings.Fields(cmdline), "initrd=initrd") {
		t.Errorf("guest command line through OVMF %q: want the image's %q with initrd=initrd", cmdline, m.Cmdline)
	}
	if cmdline, _ := guest("qboot-boot", ""); slices.Contains(strings.Fields(cmdline), "initrd=initrd") {
		t.Errorf("guest command line through qboot %q has initrd=initrd", cmdline)
	}
}
