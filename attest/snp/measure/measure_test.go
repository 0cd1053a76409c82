package measure

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snpOpts is a valid SNP launch of the AmdSev fixture with direct boot.
func snpOpts(t testing.TB) Options {
	return Options{
		Mode:          ModeSNP,
		VCPUs:         2,
		VCPUType:      "EPYC-Milan",
		OVMF:          readFixture(t, "ovmf_AmdSev_suffix.bin"),
		GuestFeatures: 0x1,
		DirectBoot:    &DirectBoot{Kernel: []byte("kernel"), Initrd: []byte("initrd"), Cmdline: "console=hvc0"},
	}
}

// withEntryZeroed returns a copy of a fixture with the first four data
// bytes of a footer table entry cleared.
func withEntryZeroed(t testing.TB, data []byte, g guid) []byte {
	t.Helper()
	out := bytes.Clone(data)
	off := entryDataOffset(t, out, g)
	clear(out[off : off+4])
	return out
}

// entryDataOffset finds where a footer table entry's data starts.
func entryDataOffset(t testing.TB, data []byte, g guid) int {
	t.Helper()
	i := bytes.LastIndex(data[:len(data)-footerReserved], g[:])
	if i < 2 {
		t.Fatalf("GUID %x not in image", g[:])
	}
	size := int(data[i-2]) | int(data[i-1])<<8
	return i + 16 - size
}

func TestLaunchDigestInvalid(t *testing.T) {
	amdSev := readFixture(t, "ovmf_AmdSev_suffix.bin")
	noFooter := make([]byte, pageSize)
	tests := []struct {
		name string
		edit func(*Options)
		want error
	}{
		{"no mode", func(o *Options) { o.Mode = 0 }, ErrInvalidOptions},
		{"zero vCPUs", func(o *Options) { o.VCPUs = 0 }, ErrInvalidOptions},
		{"SNP without SNPActive", func(o *Options) { o.GuestFeatures = 0x20 }, ErrInvalidOptions},
		{"unknown vCPU type", func(o *Options) { o.VCPUType = "EPYC-Nonesuch" }, ErrUnknownVCPUType},
		{"unknown vCPU type on EC2", func(o *Options) { o.VCPUType = "epyc"; o.VMMType = VMMEC2 }, ErrUnknownVCPUType},
		{"vCPU type and signature disagree", func(o *Options) { o.VCPUSig = 0x800f12 }, ErrInvalidOptions},
		{"unknown VMM", func(o *Options) { o.VMMType = 7 }, ErrUnknownVMMType},
		{"no firmware", func(o *Options) { o.OVMF = nil }, ErrInvalidOptions},
		{"firmware bytes and path", func(o *Options) { o.OVMFPath = "x.fd" }, ErrInvalidOptions},
		{"kernel bytes and path", func(o *Options) { o.DirectBoot.KernelPath = "vmlinuz" }, ErrInvalidOptions},
		{"OVMF hash outside SNP", func(o *Options) { o.Mode = ModeSEVES; o.SNPOVMFHash = make([]byte, 48) }, ErrInvalidOptions},
		{"OVMF hash of wrong size", func(o *Options) { o.SNPOVMFHash = make([]byte, 32) }, ErrInvalidOptions},
		{"SVSM image in SNP mode", func(o *Options) { o.SVSM = []byte{1} }, ErrInvalidOptions},
		{"SVSM mode without image", func(o *Options) { o.Mode = ModeSNPSVSM; o.DirectBoot = nil }, ErrInvalidOptions},
		{"SVSM mode on EC2", func(o *Options) {
			o.Mode, o.DirectBoot, o.SVSM, o.VMMType = ModeSNPSVSM, nil, amdSev, VMMEC2
		}, ErrInvalidOptions},
		{"SVSM image without SVSM info", func(o *Options) { o.Mode, o.DirectBoot, o.SVSM = ModeSNPSVSM, nil, amdSev }, ErrMissingMetadata},
		{"SNP firmware without footer", func(o *Options) { o.OVMF, o.DirectBoot = noFooter, nil }, ErrMissingMetadata},
		{"SEV-ES firmware without footer", func(o *Options) { o.Mode, o.OVMF, o.DirectBoot = ModeSEVES, noFooter, nil }, ErrMissingMetadata},
		{"SEV kernel without hashes table", func(o *Options) { o.Mode, o.OVMF = ModeSEV, noFooter }, ErrKernelHashesUnsupported},
		{"SNP kernel without hashes table GPA", func(o *Options) {
			o.OVMF = withEntryZeroed(t, amdSev, guidSEVHashTable)
		}, ErrKernelHashesUnsupported},
		{"APs without reset EIP", func(o *Options) {
			o.OVMF = withEntryZeroed(t, amdSev, guidSEVESReset)
		}, ErrMissingMetadata},
		{"firmware not whole pages", func(o *Options) { o.OVMF = amdSev[1:] }, ErrMalformedOVMF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := snpOpts(t)
			tt.edit(&o)
			got, err := LaunchDigest(o)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LaunchDigest() = %x, %v; want error %v", got, err, tt.want)
			}
		})
	}
}

func TestLaunchDigestMissingFile(t *testing.T) {
	o := snpOpts(t)
	o.DirectBoot = &DirectBoot{KernelPath: filepath.Join(t.TempDir(), "missing")}
	if _, err := LaunchDigest(o); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LaunchDigest() error = %v, want fs.ErrNotExist", err)
	}
	o = snpOpts(t)
	o.OVMF, o.OVMFPath = nil, filepath.Join(t.TempDir(), "missing.fd")
	if _, err := LaunchDigest(o); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LaunchDigest() error = %v, want fs.ErrNotExist", err)
	}
}

// TestPathsMatchBytes checks that images given by path measure the same as
// the same bytes given in memory.
func TestPathsMatchBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, mode := range []Mode{ModeSEV, ModeSEVES, ModeSNP} {
		t.Run(mode.String(), func(t *testing.T) {
			inMem := snpOpts(t)
			inMem.Mode = mode
			want, err := LaunchDigest(inMem)
			if err != nil {
				t.Fatal(err)
			}
			onDisk := inMem
			onDisk.OVMF, onDisk.OVMFPath = nil, write("ovmf.fd", inMem.OVMF)
			onDisk.DirectBoot = &DirectBoot{
				KernelPath: write("vmlinuz", inMem.DirectBoot.Kernel),
				InitrdPath: write("initrd", inMem.DirectBoot.Initrd),
				Cmdline:    inMem.DirectBoot.Cmdline,
			}
			got, err := LaunchDigest(onDisk)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("digest from files %x, from bytes %x", got, want)
			}
		})
	}
}

// TestInputsChangeDigest checks that every measured input reaches the
// digest, in every mode that measures it.
func TestInputsChangeDigest(t *testing.T) {
	type edit struct {
		name  string
		modes []Mode
		apply func(*Options)
	}
	all := []Mode{ModeSEV, ModeSEVES, ModeSNP}
	vmsaModes := []Mode{ModeSEVES, ModeSNP}
	edits := []edit{
		{"kernel", all, func(o *Options) { o.DirectBoot.Kernel = []byte("kernel2") }},
		{"initrd", all, func(o *Options) { o.DirectBoot.Initrd = nil }},
		{"cmdline", all, func(o *Options) { o.DirectBoot.Cmdline = "console=hvc0 " }},
		{"no direct boot", all, func(o *Options) { o.DirectBoot = nil }},
		{"firmware byte", all, func(o *Options) { o.OVMF = bytes.Clone(o.OVMF); o.OVMF[0] ^= 1 }},
		{"vCPU count", vmsaModes, func(o *Options) { o.VCPUs = 3 }},
		{"vCPU type", vmsaModes, func(o *Options) { o.VCPUType = "EPYC-Genoa" }},
		{"VMM", vmsaModes, func(o *Options) { o.VMMType = VMMGCE }},
		{"guest features", []Mode{ModeSNP}, func(o *Options) { o.GuestFeatures = 0x21 }},
	}
	for _, e := range edits {
		for _, mode := range e.modes {
			t.Run(e.name+"/"+mode.String(), func(t *testing.T) {
				base := snpOpts(t)
				base.Mode = mode
				want, err := LaunchDigest(base)
				if err != nil {
					t.Fatal(err)
				}
				changed := snpOpts(t)
				changed.Mode = mode
				e.apply(&changed)
				got, err := LaunchDigest(changed)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(got, want) {
					t.Errorf("changing %s left the digest at %x", e.name, got)
				}
			})
		}
	}
}

// TestIgnoredInputs pins down what each mode leaves out of the digest, so
// that a reference value is not tied to settings the hardware never sees.
func TestIgnoredInputs(t *testing.T) {
	tests := []struct {
		name string
		mode Mode
		vmm  VMMType
		vary func(*Options)
	}{
		{"SEV vCPUs", ModeSEV, VMMQEMU, func(o *Options) { o.VCPUs = 7 }},
		{"SEV vCPU type", ModeSEV, VMMQEMU, func(o *Options) { o.VCPUType = "EPYC-Genoa" }},
		{"SEV guest features", ModeSEV, VMMQEMU, func(o *Options) { o.GuestFeatures = 0x21 }},
		{"SEV-ES guest features", ModeSEVES, VMMQEMU, func(o *Options) { o.GuestFeatures = 0x21 }},
		{"SNP EC2 vCPU type", ModeSNP, VMMEC2, func(o *Options) { o.VCPUType = "EPYC-Rome" }},
		{"SNP GCE vCPU type", ModeSNP, VMMGCE, func(o *Options) { o.VCPUType = "EPYC-Rome" }},
		{"SEV-ES GCE vCPU signature", ModeSEVES, VMMGCE, func(o *Options) { o.VCPUType, o.VCPUSig = "", 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := snpOpts(t)
			base.Mode, base.VMMType = tt.mode, tt.vmm
			want, err := LaunchDigest(base)
			if err != nil {
				t.Fatal(err)
			}
			other := base
			tt.vary(&other)
			got, err := LaunchDigest(other)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("digest changed: %x vs %x", got, want)
			}
		})
	}
}

func TestSEVPlainFirmware(t *testing.T) {
	// Firmware without any SEV footer can still be launched with plain SEV:
	// the digest is the SHA-256 of the image.
	data := bytes.Repeat([]byte{0x5a}, 3*pageSize)
	got, err := LaunchDigest(Options{Mode: ModeSEV, OVMF: data})
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Errorf("digest %x, want %x", got, want)
	}
}

func TestParseNames(t *testing.T) {
	for _, m := range []Mode{ModeSEV, ModeSEVES, ModeSNP, ModeSNPSVSM} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	for _, s := range []string{"SEV-ES", "sev-snp", "SNP:SVSM"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
	if _, err := ParseMode("tdx"); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("ParseMode(tdx) error = %v", err)
	}
	for _, v := range []VMMType{VMMQEMU, VMMEC2, VMMGCE} {
		if got, err := ParseVMMType(v.String()); err != nil || got != v {
			t.Errorf("ParseVMMType(%q) = %v, %v", v.String(), got, err)
		}
	}
	if _, err := ParseVMMType("krun"); !errors.Is(err, ErrUnknownVMMType) {
		t.Errorf("ParseVMMType(krun) error = %v", err)
	}
}

func BenchmarkLaunchDigest(b *testing.B) {
	amdSev := readFixture(b, "ovmf_AmdSev_suffix.bin")
	svsmOVMF := readFixture(b, "svsm_ovmf.fd")
	svsm := readFixture(b, "svsm.bin")
	kernel := bytes.Repeat([]byte{0x90}, 8<<20)
	benches := []struct {
		name string
		opts Options
	}{
		{"snp-direct-boot-8MiB-kernel", Options{
			Mode: ModeSNP, VCPUs: 4, VCPUType: "EPYC-v4", OVMF: amdSev, GuestFeatures: 0x1,
			DirectBoot: &DirectBoot{Kernel: kernel, Cmdline: "console=hvc0"},
		}},
		{"snp-svsm-4.5MiB-images", Options{
			Mode: ModeSNPSVSM, VCPUs: 4, VCPUType: "EPYC-v4", OVMF: svsmOVMF, SVSM: svsm, OVMFVarsSize: 540672,
		}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := LaunchDigest(bb.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
