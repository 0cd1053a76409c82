package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest/policy"
	snpmeasure "github.com/sccontainers/scc/attest/snp/measure"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/image"
	"github.com/sccontainers/scc/vmm/image/imagetest"
)

// The measure package's real TDVF and the values known for it and for the
// guest image writeGuestImage builds (attest/tdx/measure/testdata/README.md
// says how they were obtained).
const (
	tdvfFixture  = "../../attest/tdx/measure/testdata/debian-ovmf-2022.11-6+deb12u2.fd"
	wantMRTD     = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47"
	wantMRTDAdds = "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1"
	wantRTMR2    = "ff8575528b5dfce8a3411d775284ad682ae335baefce2ad547541e23c3ec92135222e36b2ae5e61501044604bb0f1dea"
)

// writeGuestImage writes a guest image as `scc guest build` leaves it,
// with stand-in kernels and the initrd and command line the measure
// package's known values are for.
func writeGuestImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := imagetest.Write(dir, []byte("hello initrd"), "console=ttyS0 quiet"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An OVMF built for SEV with a kernel hashes table, from the SNP
// known-answer vectors' fixtures.
const snpOVMF = "../../attest/snp/measure/testdata/fixtures/ovmf_AmdSev_suffix.bin"

// The SNP digest is that of a launch with the image's bzImage, the file
// QEMU hashes into the SEV hashes table, computed here straight through the
// measure package; over the vmlinux it would differ.
func TestGuestMeasureSNP(t *testing.T) {
	dir := writeGuestImage(t)
	var out bytes.Buffer
	if err := guestMeasure([]string{"--firmware", snpOVMF, "--guest", dir, "--vcpus", "2"}, &out); err != nil {
		t.Fatal(err)
	}
	digest := func(kernel string) string {
		d, err := snpmeasure.LaunchDigest(snpmeasure.Options{
			Mode: snpmeasure.ModeSNP, VCPUs: 2, VCPUType: vmm.DefaultSNPVCPUType, VMMType: snpmeasure.VMMQEMU,
			OVMFPath: snpOVMF, GuestFeatures: vmm.SEVFeatureSNPActive,
			DirectBoot: &snpmeasure.DirectBoot{KernelPath: filepath.Join(dir, kernel), InitrdPath: filepath.Join(dir, "initrd.img"), Cmdline: "console=ttyS0 quiet"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(d)
	}
	got := strings.TrimSpace(out.String())
	if want := digest("vmlinuz"); got != want {
		t.Errorf("guest measure printed %s, want the digest over vmlinuz %s", got, want)
	}
	if got == digest("vmlinux") {
		t.Error("guest measure printed the digest over vmlinux")
	}
}

// An image built before images kept the bzImage cannot be measured: its
// vmlinux is not what a confidential launch boots.
func TestGuestMeasureVersion1Image(t *testing.T) {
	dir := writeGuestImage(t)
	if err := imagetest.AsVersion1(dir); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--firmware", snpOVMF, "--guest", dir},
		{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir},
	} {
		err := guestMeasure(args, &bytes.Buffer{})
		if !errors.Is(err, image.ErrNoEFIKernel) || !strings.Contains(err.Error(), "scc guest build") {
			t.Errorf("guestMeasure(%q) = %v, want %v saying to rebuild", args, err, image.ErrNoEFIKernel)
		}
	}
}

func TestGuestMeasureTDX(t *testing.T) {
	dir := writeGuestImage(t)
	mrConfigID := strings.Repeat("ab", 48)
	var out bytes.Buffer
	if err := guestMeasure([]string{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--mr-config-id", mrConfigID}, &out); err != nil {
		t.Fatal(err)
	}
	var ref policy.Reference
	if err := policy.DecodeStrict(out.Bytes(), &ref); err != nil {
		t.Fatalf("output %s: %v", out.String(), err)
	}
	if len(ref.MRTD) != 1 || ref.MRTD[0] != wantMRTD || len(ref.RTMRs["2"]) != 1 || ref.RTMRs["2"][0] != wantRTMR2 || ref.MRConfigID != mrConfigID {
		t.Fatalf("reference values %s", out.String())
	}

	// The output is a workload's "tdx" entry: a policy document built from
	// it accepts a quote with these values and refuses another RTMR[2].
	doc, err := json.Marshal(policy.Document{
		Attestation: map[string]policy.TEE{"tdx": {Allow: true}},
		Workloads:   map[string]policy.Workload{"web": {"tdx": ref}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := policy.Parse(doc)
	if err != nil {
		t.Fatalf("policy with the measured values: %v", err)
	}
	unhex := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	quote := policy.Values{"mrtd": unhex(wantMRTD), "rtmr2": unhex(wantRTMR2), "mr_config_id": unhex(mrConfigID), "rtmr0": make([]byte, 48)}
	if w, err := d.Match("tdx", quote); err != nil || len(w) != 1 || w[0] != "web" {
		t.Errorf("Match() = %v, %v", w, err)
	}
	quote["rtmr2"] = make([]byte, 48)
	if _, err := d.Match("tdx", quote); err == nil {
		t.Error("Match() accepted another RTMR[2]")
	}

	out.Reset()
	if err := guestMeasure([]string{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--page-order", "adds-first"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), wantMRTDAdds) || strings.Contains(out.String(), "mr_config_id") {
		t.Errorf("adds-first output %s", out.String())
	}
}

func TestGuestMeasureFlagErrors(t *testing.T) {
	dir := writeGuestImage(t)
	for _, args := range [][]string{
		{"--tee", "tdx", "--guest", dir},
		{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--vcpu-type", "EPYC"},
		{"--tee", "snp", "--firmware", tdvfFixture, "--guest", dir, "--page-order", "per-page"},
		{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--page-order", "sideways"},
		{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--initrd-arg", "middle"},
		{"--tee", "tdx", "--firmware", tdvfFixture, "--guest", dir, "--mr-config-id", "abcd"},
		{"--tee", "sev", "--firmware", tdvfFixture, "--guest", dir},
		{"--tee", "tdx", "--firmware", filepath.Join(dir, "vmlinux"), "--guest", dir},
	} {
		if err := guestMeasure(args, &bytes.Buffer{}); err == nil {
			t.Errorf("guestMeasure(%q) succeeded", args)
		}
	}
}
