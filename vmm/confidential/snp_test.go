package confidential

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest/snp/measure"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

// The measure package's known-answer vectors, shared rather than copied.
const vectorsDir = "../../attest/snp/measure/testdata"

type vector struct {
	Name           string  `json:"name"`
	Mode           string  `json:"mode"`
	VCPUs          int     `json:"vcpus"`
	VCPUType       *string `json:"vcpu_type"`
	VMMType        string  `json:"vmm_type"`
	OVMF           string  `json:"ovmf"`
	Kernel         *string `json:"kernel"`
	Initrd         *string `json:"initrd"`
	Append         *string `json:"append"`
	GuestFeatures  string  `json:"guest_features"`
	ExpectedDigest string  `json:"expected_digest"`
	ExpectedError  string  `json:"expected_error"`
}

// qemuSNPVectors returns the vectors of SNP launches by QEMU with a named
// vCPU model: the launches a vmm.Config can describe.
func qemuSNPVectors(t *testing.T) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, "vectors.json"))
	if err != nil {
		t.Fatalf("read measure vectors: %v", err)
	}
	var all []vector
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for _, v := range all {
		if v.Mode == "snp" && v.VMMType == "QEMU" && v.VCPUType != nil {
			vs = append(vs, v)
		}
	}
	if len(vs) < 8 {
		t.Fatalf("only %d QEMU SNP vectors in %s", len(vs), vectorsDir)
	}
	return vs
}

// configFor builds the vmm.Config of the launch v describes. The vectors'
// kernel and initrd are /dev/null, i.e. present and empty.
func configFor(t *testing.T, v vector) vmm.Config {
	t.Helper()
	dir := t.TempDir()
	empty := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	features, err := strconv.ParseUint(v.GuestFeatures, 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	c := vmm.Config{
		ID:        "measured",
		StateDir:  filepath.Join(dir, "state"),
		Kernel:    empty("vmlinux"),
		VCPUs:     v.VCPUs,
		MemoryMiB: 512,
		Accel:     vmm.AccelKVM,
		TEE: &vmm.TEEConfig{
			Type:     vmm.TEESNP,
			Firmware: filepath.Join(vectorsDir, "fixtures", v.OVMF),
			SNP: vmm.SNPConfig{
				KernelHashes:  v.Kernel != nil,
				VCPUType:      *v.VCPUType,
				GuestFeatures: features,
			},
		},
	}
	if v.Initrd != nil {
		c.Initrd = empty("initrd")
	}
	if v.Append != nil {
		c.Cmdline = *v.Append
	}
	return c
}

func TestExpectedSNPDigestVectors(t *testing.T) {
	for _, v := range qemuSNPVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			cfg := configFor(t, v)
			got, err := ExpectedSNPDigest(cfg, nil)
			if v.ExpectedError != "" {
				// The only failing QEMU vectors boot a kernel with
				// firmware that cannot measure it.
				if !errors.Is(err, measure.ErrKernelHashesUnsupported) {
					t.Fatalf("ExpectedSNPDigest() error = %v, want ErrKernelHashesUnsupported (%s)", err, v.ExpectedError)
				}
				return
			}
			if err != nil {
				t.Fatalf("ExpectedSNPDigest(): %v", err)
			}
			if h := hex.EncodeToString(got); h != v.ExpectedDigest {
				t.Errorf("digest = %s, want %s", h, v.ExpectedDigest)
			}

			// The same from the firmware bytes as from its path.
			fw, err := os.ReadFile(cfg.TEE.Firmware)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TEE.Firmware = ""
			fromBytes, err := ExpectedSNPDigest(cfg, fw)
			if err != nil || !bytes.Equal(fromBytes, got) {
				t.Errorf("digest from firmware bytes = %x, %v; want %x", fromBytes, err, got)
			}
		})
	}
}

// The digest follows what the shim boots: any change to the kernel, the
// command line or the vCPU count changes it.
func TestExpectedSNPDigestFollowsConfig(t *testing.T) {
	var base vector
	for _, v := range qemuSNPVectors(t) {
		if v.Name == "test_snp_default" {
			base = v
		}
	}
	if base.Name == "" {
		t.Fatal("vector test_snp_default not found")
	}
	want, err := ExpectedSNPDigest(configFor(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *vmm.Config)
	}{
		{"kernel", func(t *testing.T, c *vmm.Config) { os.WriteFile(c.Kernel, []byte("other kernel"), 0o644) }},
		{"initrd", func(t *testing.T, c *vmm.Config) { os.WriteFile(c.Initrd, []byte("other initrd"), 0o644) }},
		{"no initrd", func(t *testing.T, c *vmm.Config) { c.Initrd = ""; os.WriteFile(c.Kernel, []byte("k"), 0o644) }},
		{"cmdline", func(t *testing.T, c *vmm.Config) { c.Cmdline += " init=/bin/sh" }},
		{"vcpus", func(t *testing.T, c *vmm.Config) { c.VCPUs = 2 }},
		{"vcpu type", func(t *testing.T, c *vmm.Config) { c.TEE.SNP.VCPUType = "EPYC-Milan" }},
		{"features", func(t *testing.T, c *vmm.Config) { c.TEE.SNP.GuestFeatures = 0x1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configFor(t, base)
			tt.mutate(t, &c)
			got, err := ExpectedSNPDigest(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, want) {
				t.Errorf("digest unchanged by a different %s", tt.name)
			}
		})
	}
}

func TestExpectedSNPDigestIDBlock(t *testing.T) {
	v := qemuSNPVectors(t)[0]
	cfg := configFor(t, v)
	digest, err := ExpectedSNPDigest(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, vmm.SNPIDBlockSize)
	copy(block, digest)
	binary.LittleEndian.PutUint64(block[0x58:], vmm.DefaultSNPPolicy)
	cfg.TEE.SNP.IDBlock = base64.StdEncoding.EncodeToString(block)
	cfg.TEE.SNP.IDAuth = base64.StdEncoding.EncodeToString(make([]byte, vmm.SNPIDAuthSize))
	if _, err := ExpectedSNPDigest(cfg, nil); err != nil {
		t.Errorf("ID block signing the digest: %v", err)
	}
	block[0] ^= 1
	cfg.TEE.SNP.IDBlock = base64.StdEncoding.EncodeToString(block)
	if _, err := ExpectedSNPDigest(cfg, nil); !errors.Is(err, ErrIDBlockMismatch) {
		t.Errorf("ID block signing another digest: err = %v, want ErrIDBlockMismatch", err)
	}
}

func TestExpectedSNPDigestNotMeasurable(t *testing.T) {
	v := qemuSNPVectors(t)[0]
	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
	}{
		{"no tee", func(c *vmm.Config) { c.TEE = nil }},
		{"tdx", func(c *vmm.Config) { c.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: c.TEE.Firmware} }},
		{"igvm", func(c *vmm.Config) { c.TEE.SNP.IGVM, c.TEE.Firmware = c.Kernel, "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configFor(t, v)
			tt.mutate(&c)
			if _, err := ExpectedSNPDigest(c, nil); !errors.Is(err, ErrNotMeasurable) {
				t.Errorf("err = %v, want ErrNotMeasurable", err)
			}
		})
	}
}

// A measurement over a kernel the firmware cannot start describes no
// launch: the PVH vmlinux and a bzImage without an EFI stub are refused,
// the bzImage with one is measured.
func TestExpectedMeasurementsNeedEFIKernel(t *testing.T) {
	v := qemuSNPVectors(t)[0]
	efi := vmmtest.EFIKernel([]byte("kernel"))
	noStub := append([]byte(nil), efi...)
	noStub[0] = 0
	for _, k := range []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"pvh vmlinux", []byte("\x7fELF\x02\x01\x01\x00 vmlinux"), false},
		{"bzImage without efi stub", noStub, false},
		{"bzImage with efi stub", efi, true},
	} {
		t.Run(k.name, func(t *testing.T) {
			snp := configFor(t, v)
			snp.TEE.SNP.KernelHashes = true
			if err := os.WriteFile(snp.Kernel, k.content, 0o644); err != nil {
				t.Fatal(err)
			}
			tdx := tdxConfig(t, true)
			tdx.Kernel = snp.Kernel
			_, snpErr := ExpectedSNPDigest(snp, nil)
			_, tdxErr := ExpectedTDXMeasurements(tdx, nil, TDXHost{})
			for tee, err := range map[string]error{"snp": snpErr, "tdx": tdxErr} {
				if k.ok {
					if err != nil {
						t.Errorf("%s: %v", tee, err)
					}
					continue
				}
				if !errors.Is(err, ErrNotMeasurable) || !errors.Is(err, vmm.ErrKernelFormat) || !strings.Contains(err.Error(), "vmlinuz") {
					t.Errorf("%s: err = %v, want ErrNotMeasurable and vmm.ErrKernelFormat pointing at vmlinuz", tee, err)
				}
			}
		})
	}
}
