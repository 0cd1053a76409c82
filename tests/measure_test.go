package tests

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	snpmeasure "github.com/sccontainers/scc/attest/snp/measure"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/image"
)

// TestGuestMeasure computes the SEV-SNP launch digest of the guest image:
// a SHA-384, the same for the same inputs, different for a different VM,
// and computed over the image's EFI kernel (vmlinuz), the file a
// confidential launch hands QEMU, not over the vmlinux ordinary VMs boot.
func TestGuestMeasure(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ovmf, _ := filepath.Abs("../attest/snp/measure/testdata/fixtures/ovmf_AmdSev_suffix.bin")
	measure := func(vcpus string) string {
		return strings.TrimSpace(scc(t, ctx, "guest", "measure", "--guest", guestDir(), "--ovmf", ovmf, "--vcpus", vcpus))
	}
	a, b, c := measure("1"), measure("1"), measure("2")
	if d, err := hex.DecodeString(a); err != nil || len(d) != 48 {
		t.Fatalf("digest %q is not a SHA-384", a)
	}
	if a != b {
		t.Error("the same VM measured twice gives two digests")
	}
	if a == c {
		t.Error("one and two vCPUs give the same digest")
	}

	m, err := image.Load(guestDir())
	if err != nil {
		t.Fatal(err)
	}
	digest := func(kernel string) string {
		d, err := snpmeasure.LaunchDigest(snpmeasure.Options{
			Mode: snpmeasure.ModeSNP, VCPUs: 1, VCPUType: vmm.DefaultSNPVCPUType, VMMType: snpmeasure.VMMQEMU,
			OVMFPath: ovmf, GuestFeatures: vmm.SEVFeatureSNPActive,
			DirectBoot: &snpmeasure.DirectBoot{KernelPath: kernel, InitrdPath: m.Initrd.Path, Cmdline: m.Cmdline},
		})
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(d)
	}
	if want := digest(m.EFIKernel.Path); a != want {
		t.Errorf("scc guest measure printed %s, the digest over %s is %s", a, m.EFIKernel.Path, want)
	}
	if a == digest(m.Kernel.Path) {
		t.Errorf("scc guest measure printed the digest over %s", m.Kernel.Path)
	}
}
