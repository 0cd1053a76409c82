package confidential

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sccontainers/scc/attest/tdx/measure"
	"github.com/sccontainers/scc/vmm"
)

// The measure package's real TDVF, shared rather than copied, and its
// known MRTDs (see attest/tdx/measure/testdata/README.md for how they were
// obtained and what they do not prove).
const (
	tdvfFixture        = "../../attest/tdx/measure/testdata/debian-ovmf-2022.11-6+deb12u2.fd"
	tdvfMRTDPerPage    = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47"
	tdvfMRTDAddsFirst  = "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1"
	rtmr2InitrdSuffix  = "ff8575528b5dfce8a3411d775284ad682ae335baefce2ad547541e23c3ec92135222e36b2ae5e61501044604bb0f1dea"
	rtmr2InitrdPrefix  = "f1fcc51fceb1ccf38f9cf1a1c1f00860f5737c191b5e865fab9f46a8549831bfd049ad13580e8b670376d0870a333bb6"
	rtmr2WithoutInitrd = "0b0a40c1d017734917d7ae53cdc501d8bc9a22700a23ff75577bab95d8a4ede4d69c3efc0245449731384d4ce83f5211"
)

// tdxConfig is a TD booting a kernel with the command line and initrd
// content the RTMR[2] vectors were computed for.
func tdxConfig(t *testing.T, initrd bool) vmm.Config {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := vmm.Config{
		ID:        "measured",
		StateDir:  filepath.Join(dir, "state"),
		Kernel:    write("vmlinuz", "not measured into RTMR[2]"),
		Cmdline:   "console=ttyS0 quiet",
		VCPUs:     2,
		MemoryMiB: 512,
		Accel:     vmm.AccelKVM,
		TEE:       &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: tdvfFixture},
	}
	for i := range c.TEE.TDX.MRConfigID {
		c.TEE.TDX.MRConfigID[i] = byte(i)
	}
	if initrd {
		c.Initrd = write("initrd.img", "hello initrd")
	}
	return c
}

func TestExpectedTDXMeasurements(t *testing.T) {
	tests := []struct {
		name      string
		initrd    bool
		host      TDXHost
		mrtd, rtm string
	}{
		{"upstream", true, TDXHost{}, tdvfMRTDPerPage, rtmr2InitrdSuffix},
		{"older kvm", true, TDXHost{PageOrder: measure.OrderAddsFirst}, tdvfMRTDAddsFirst, rtmr2InitrdSuffix},
		{"newer edk2", true, TDXHost{InitrdArg: measure.InitrdArgPrefix}, tdvfMRTDPerPage, rtmr2InitrdPrefix},
		{"no initrd", false, TDXHost{}, tdvfMRTDPerPage, rtmr2WithoutInitrd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tdxConfig(t, tt.initrd)
			m, err := ExpectedTDXMeasurements(cfg, nil, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(m.MRTD); h != tt.mrtd {
				t.Errorf("MRTD = %s, want %s", h, tt.mrtd)
			}
			if h := hex.EncodeToString(m.RTMR2); h != tt.rtm {
				t.Errorf("RTMR2 = %s, want %s", h, tt.rtm)
			}
			if !bytes.Equal(m.MRConfigID, cfg.TEE.TDX.MRConfigID[:]) {
				t.Errorf("MRConfigID = %x", m.MRConfigID)
			}
		})
	}
}

func TestExpectedTDXMeasurementsErrors(t *testing.T) {
	cfg := tdxConfig(t, true)
	snp := cfg
	snp.TEE = &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: tdvfFixture}
	if _, err := ExpectedTDXMeasurements(snp, nil, TDXHost{}); !errors.Is(err, ErrNotMeasurable) {
		t.Errorf("SNP config: error = %v, want %v", err, ErrNotMeasurable)
	}
	// A firmware without the footer table (such as a SeaBIOS image).
	if _, err := ExpectedTDXMeasurements(cfg, make([]byte, 64<<10), TDXHost{}); !errors.Is(err, measure.ErrNotTDVF) {
		t.Errorf("non-TDVF firmware: error = %v, want %v", err, measure.ErrNotTDVF)
	}
	// The last page of an SEV build has TDX metadata whose sections lie
	// outside it: the parser's error, not a digest.
	sev, err := os.ReadFile(filepath.Join(vectorsDir, "fixtures", "ovmf_AmdSev_suffix.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ExpectedTDXMeasurements(cfg, sev, TDXHost{}); !errors.Is(err, measure.ErrMalformedTDVF) {
		t.Errorf("truncated firmware: error = %v, want %v", err, measure.ErrMalformedTDVF)
	}
	missing := cfg
	missing.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: filepath.Join(t.TempDir(), "none.fd")}
	if _, err := ExpectedTDXMeasurements(missing, nil, TDXHost{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing firmware: error = %v", err)
	}
	gone := cfg
	gone.Initrd = filepath.Join(t.TempDir(), "gone.img")
	if _, err := ExpectedTDXMeasurements(gone, nil, TDXHost{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing initrd: error = %v", err)
	}
	// Without a directly booted kernel there is no RTMR[2] to predict.
	noKernel := cfg
	noKernel.Kernel = ""
	if m, err := ExpectedTDXMeasurements(noKernel, nil, TDXHost{}); err != nil || m.RTMR2 != nil || hex.EncodeToString(m.MRTD) != tdvfMRTDPerPage {
		t.Errorf("no kernel: %x, %x, %v", m.MRTD, m.RTMR2, err)
	}
}
