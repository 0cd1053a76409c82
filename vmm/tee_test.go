package vmm

import (
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm/vmmtest"
)

// snpConfig returns a Config for an SNP guest that passes Validate.
func snpConfig(t *testing.T) Config {
	t.Helper()
	c := validConfig(t)
	ovmf := filepath.Join(t.TempDir(), "OVMF.amdsev.fd")
	if err := os.WriteFile(ovmf, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A confidential VM boots through UEFI firmware: its kernel is a
	// bzImage with an EFI stub.
	c.Kernel = filepath.Join(t.TempDir(), "vmlinuz")
	if err := vmmtest.WriteEFIKernel(c.Kernel, nil); err != nil {
		t.Fatal(err)
	}
	c.Firmware = ""
	c.Accel = AccelKVM
	c.TEE = &TEEConfig{Type: TEESNP, Firmware: ovmf, SNP: SNPConfig{KernelHashes: true}}
	return c.WithDefaults()
}

func tdxConfig(t *testing.T) Config {
	t.Helper()
	c := snpConfig(t)
	c.TEE = &TEEConfig{Type: TEETDX, Firmware: c.TEE.Firmware}
	return c.WithDefaults()
}

// mustWrite replaces the file at path with content.
func mustWrite(path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		panic(err)
	}
}

// idBlock returns a base64 ID block signing policy.
func idBlock(policy uint64) string {
	b := make([]byte, SNPIDBlockSize)
	binary.LittleEndian.PutUint64(b[0x58:], policy)
	return base64.StdEncoding.EncodeToString(b)
}

var idAuth = base64.StdEncoding.EncodeToString(make([]byte, SNPIDAuthSize))

func TestTEEWithDefaults(t *testing.T) {
	orig := &TEEConfig{Type: TEESNP}
	c := Config{Firmware: "/usr/share/ovmf/OVMF.amdsev.fd", TEE: orig}.WithDefaults()
	got := c.TEE
	if got == orig {
		t.Fatal("WithDefaults shares the TEE config with the original")
	}
	if *orig != (TEEConfig{Type: TEESNP}) {
		t.Errorf("WithDefaults changed the caller's TEE config to %+v", *orig)
	}
	if got.SNP.Policy != 0x30000 || got.SNP.VCPUType != "EPYC-v4" || got.SNP.GuestFeatures != 1 {
		t.Errorf("SNP defaults = policy %#x, vcpu %q, features %#x; want 0x30000, EPYC-v4, 0x1", got.SNP.Policy, got.SNP.VCPUType, got.SNP.GuestFeatures)
	}
	if got.Firmware != c.Firmware {
		t.Errorf("TEE firmware = %q, want Config.Firmware %q", got.Firmware, c.Firmware)
	}

	// No qboot for a confidential VM: its firmware must be named.
	c = Config{TEE: &TEEConfig{Type: TEETDX}}.WithDefaults()
	if c.Firmware != "" || c.TEE.Firmware != "" {
		t.Errorf("TDX firmware defaulted to %q / %q, want none", c.Firmware, c.TEE.Firmware)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tdx firmware (TDVF) path is empty") {
		t.Errorf("Validate() = %v, want the missing TDVF named", err)
	}

	// An ordinary VM keeps qboot, with or without an explicit TEENone.
	for _, tee := range []*TEEConfig{nil, {}, {Type: TEENone}} {
		if fw := (Config{TEE: tee}).WithDefaults().Firmware; fw != DefaultFirmware {
			t.Errorf("firmware with TEE %+v = %q, want %q", tee, fw, DefaultFirmware)
		}
	}
}

func TestValidateTEE(t *testing.T) {
	tests := []struct {
		name   string
		base   func(t *testing.T) Config
		mutate func(c *Config)
		want   []string // substrings of the error; nil for valid
	}{
		{"snp", snpConfig, func(c *Config) {}, nil},
		{"snp with auto accel", snpConfig, func(c *Config) { c.Accel = AccelAuto }, nil},
		{"snp with id block", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = idBlock(0x30000), idAuth }, nil},
		{"snp with host data", snpConfig, func(c *Config) { c.TEE.SNP.HostData[0] = 1 }, nil},
		{"snp with cbitpos", snpConfig, func(c *Config) { c.TEE.SNP.CBitPos, c.TEE.SNP.ReducedPhysBits = 51, 1 }, nil},
		{"snp igvm", snpConfig, func(c *Config) { c.TEE.SNP.IGVM, c.TEE.Firmware, c.TEE.SNP.KernelHashes = c.Kernel, "", false }, nil},
		{"snp under tcg", snpConfig, func(c *Config) { c.Accel = AccelTCG }, []string{"snp needs hardware virtualisation"}},
		{"snp without kernel hashes", snpConfig, func(c *Config) { c.TEE.SNP.KernelHashes = false }, []string{"kernel-hashes is off"}},
		{"snp firmware missing", snpConfig, func(c *Config) { c.TEE.Firmware = "/nonexistent/OVMF.fd" }, []string{"snp firmware (OVMF)", "/nonexistent/OVMF.fd"}},
		{"snp firmware and igvm", snpConfig, func(c *Config) { c.TEE.SNP.IGVM = c.Kernel }, []string{"want one"}},
		{"snp qboot", snpConfig, func(c *Config) { c.TEE.Firmware = DefaultFirmware }, []string{"qboot"}},
		{"firmware differs", snpConfig, func(c *Config) { c.Firmware = c.Kernel }, []string{"differs from the TEE firmware"}},
		{"debug policy", snpConfig, func(c *Config) { c.TEE.SNP.Policy |= SNPPolicyDebug }, []string{"allows debugging"}},
		{"migration agent policy", snpConfig, func(c *Config) { c.TEE.SNP.Policy |= SNPPolicyMigrateMA }, []string{"migration agent"}},
		{"policy without reserved bit", snpConfig, func(c *Config) { c.TEE.SNP.Policy = SNPPolicySMT }, []string{"reserved bit 17"}},
		{"policy with high bits", snpConfig, func(c *Config) { c.TEE.SNP.Policy |= 1 << 40 }, []string{"bits 63:26"}},
		{"features without snp active", snpConfig, func(c *Config) { c.TEE.SNP.GuestFeatures = SEVFeatureDebugSwap }, []string{"SNPActive"}},
		{"bad vcpu type", snpConfig, func(c *Config) { c.TEE.SNP.VCPUType = "EPYC,kvm=off" }, []string{"vcpu type"}},
		{"half cbit config", snpConfig, func(c *Config) { c.TEE.SNP.CBitPos = 51 }, []string{"give both or neither"}},
		{"id block alone", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock = idBlock(0x30000) }, []string{"id-block and id-auth go together"}},
		{"id block not base64", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = "!!", idAuth }, []string{"id-block: not base64"}},
		{"id block short", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = "AAAA", idAuth }, []string{"id-block is 3 bytes, want 96"}},
		{"id auth short", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = idBlock(0x30000), "AAAA" }, []string{"id-auth is 3 bytes, want 4096"}},
		{"id block policy mismatch", snpConfig, func(c *Config) { c.TEE.SNP.IDBlock, c.TEE.SNP.IDAuth = idBlock(0x31000), idAuth }, []string{"id-block signs policy 0x31000", "0x30000"}},
		{"snp with tdx settings", snpConfig, func(c *Config) { c.TEE.TDX.MRConfigID[0] = 1 }, []string{"TDX settings"}},
		{"tdx", tdxConfig, func(c *Config) {}, nil},
		{"tdx with vsock qgs", tdxConfig, func(c *Config) { c.TEE.TDX.QuoteGenerationSocket = "vsock:2:4050" }, nil},
		{"tdx with unix qgs", tdxConfig, func(c *Config) { c.TEE.TDX.QuoteGenerationSocket = "unix:/run/tdx-qgs/qgs.socket" }, nil},
		{"tdx bad qgs", tdxConfig, func(c *Config) { c.TEE.TDX.QuoteGenerationSocket = "tcp:1.2.3.4:1" }, []string{"quote generation socket"}},
		{"tdx relative unix qgs", tdxConfig, func(c *Config) { c.TEE.TDX.QuoteGenerationSocket = "unix:qgs.sock" }, []string{"absolute path"}},
		{"tdx under tcg", tdxConfig, func(c *Config) { c.Accel = AccelTCG }, []string{"tdx needs hardware virtualisation"}},
		{"tdx with snp settings", tdxConfig, func(c *Config) { c.TEE.SNP.KernelHashes = true }, []string{"SEV-SNP settings"}},
		{"tdx firmware missing", tdxConfig, func(c *Config) { c.TEE.Firmware = "/nonexistent/TDVF.fd" }, []string{"TDVF", "/nonexistent/TDVF.fd"}},
		{"snp with a pvh vmlinux", snpConfig, func(c *Config) { mustWrite(c.Kernel, "\x7fELF\x02\x01\x01") },
			[]string{"format is pvh", "snp VMs boot through their measured UEFI firmware", "EFI stub"}},
		{"tdx with a bzImage without efi stub", tdxConfig, func(c *Config) { b := vmmtest.EFIKernel(nil); b[0] = 0; mustWrite(c.Kernel, string(b)) },
			[]string{"format is bzimage", "tdx VMs"}},
		{"snp with an unknown kernel", snpConfig, func(c *Config) { mustWrite(c.Kernel, "x") }, []string{"format is unknown"}},
		{"unknown type", snpConfig, func(c *Config) { c.TEE.Type = "sgx" }, []string{`type "sgx"`}},
		{"none ignores the rest", snpConfig, func(c *Config) { c.TEE.Type = TEENone; c.Firmware = c.Kernel }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.base(t)
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestParseQGSAddress(t *testing.T) {
	tests := []struct {
		in   string
		want QGSAddress
		bad  bool
	}{
		{in: "vsock:2:4050", want: QGSAddress{Network: "vsock", CID: 2, Port: 4050}},
		{in: "unix:/var/run/tdx-qgs/qgs.socket", want: QGSAddress{Network: "unix", Path: "/var/run/tdx-qgs/qgs.socket"}},
		{in: "vsock:2", bad: true},
		{in: "vsock:x:1", bad: true},
		{in: "vsock:2:99999999999", bad: true},
		{in: "unix:/a,b", bad: true},
		{in: "/run/qgs.sock", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseQGSAddress(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseQGSAddress(%q) = %+v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseQGSAddress(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("String() = %q, want %q", s, tt.in)
		}
	}
}
