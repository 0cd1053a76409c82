package tests

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestMeasure computes the SEV-SNP launch digest of the guest image:
// a SHA-384, the same for the same inputs, different for a different VM.
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
}
