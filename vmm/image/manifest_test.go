package image

import (
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

// writeImage writes a fake image directory and its manifest.
func writeImage(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	kernel, initrd := []byte("\x7fELF kernel bytes"), []byte("initrd bytes")
	bz := vmmtest.EFIKernel([]byte("compressed kernel"))
	for name, data := range map[string][]byte{VmlinuxName: kernel, VmlinuzName: bz, InitrdName: initrd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const cmdline = "console=ttyS0 quiet"
	m := &Manifest{
		Version:       ManifestVersion,
		Kernel:        File{Path: filepath.Join(dir, VmlinuxName), SHA256: hex.EncodeToString(hashBytes(kernel))},
		EFIKernel:     File{Path: filepath.Join(dir, VmlinuzName), SHA256: hex.EncodeToString(hashBytes(bz))},
		Initrd:        File{Path: filepath.Join(dir, InitrdName), SHA256: hex.EncodeToString(hashBytes(initrd))},
		Cmdline:       cmdline,
		CmdlineSHA256: hex.EncodeToString(hashBytes([]byte(cmdline))),
		KernelRelease: "6.1.0-56-amd64",
		Modules:       []string{"virtio", "virtio_pci"},
	}
	if err := m.write(dir); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestManifestRoundTrip(t *testing.T) {
	dir, m := writeImage(t)

	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk map[string]any
	if err := json.Unmarshal(raw, &onDisk); err != nil {
		t.Fatal(err)
	}
	if p := onDisk["kernel"].(map[string]any)["path"]; p != VmlinuxName {
		t.Errorf("manifest.json kernel path = %v, want %q (relative)", p, VmlinuxName)
	}
	if p := onDisk["efi_kernel"].(map[string]any)["path"]; p != VmlinuzName || onDisk["version"] != float64(ManifestVersion) {
		t.Errorf("manifest.json efi kernel path %v, version %v; want %q, %d", p, onDisk["version"], VmlinuzName, ManifestVersion)
	}
	for _, key := range []string{"kernel", "initrd", "cmdline", "cmdline_sha256", "kernel_release", "kernel_package", "agent_sha256", "modules"} {
		if _, ok := onDisk[key]; !ok {
			t.Errorf("manifest.json lacks %q", key)
		}
	}

	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kernel != m.Kernel || got.EFIKernel != m.EFIKernel || got.Version != ManifestVersion || got.Initrd != m.Initrd || got.Cmdline != m.Cmdline || strings.Join(got.Modules, ",") != "virtio,virtio_pci" {
		t.Errorf("Load() = %+v, want %+v", got, m)
	}
	if err := got.Verify(); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

func TestManifestVerifyDetectsChanges(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, m *Manifest)
		want   error
	}{
		{"kernel changed", func(t *testing.T, m *Manifest) {
			if err := os.WriteFile(m.Kernel.Path, []byte("other kernel"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrDigestMismatch},
		{"efi kernel changed", func(t *testing.T, m *Manifest) {
			if err := os.WriteFile(m.EFIKernel.Path, vmmtest.EFIKernel([]byte("other")), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrDigestMismatch},
		{"efi kernel removed", func(t *testing.T, m *Manifest) {
			if err := os.Remove(m.EFIKernel.Path); err != nil {
				t.Fatal(err)
			}
		}, fs.ErrNotExist},
		{"initrd changed", func(t *testing.T, m *Manifest) {
			if err := os.WriteFile(m.Initrd.Path, []byte("initrd bytes!"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrDigestMismatch},
		{"cmdline changed", func(t *testing.T, m *Manifest) { m.Cmdline += " init=/bin/sh" }, ErrDigestMismatch},
		{"digest not hex", func(t *testing.T, m *Manifest) { m.Kernel.SHA256 = "zz" }, ErrDigestMismatch},
		{"digest truncated", func(t *testing.T, m *Manifest) { m.Initrd.SHA256 = m.Initrd.SHA256[:32] }, ErrDigestMismatch},
		{"initrd removed", func(t *testing.T, m *Manifest) {
			if err := os.Remove(m.Initrd.Path); err != nil {
				t.Fatal(err)
			}
		}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := writeImage(t)
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, m)
			if err := m.Verify(); !errors.Is(err, tt.want) {
				t.Errorf("Verify() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, err := Load(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "scc guest build") {
			t.Errorf("Load(empty dir) = %v; want a not-exist error telling to run scc guest build", err)
		}
	})
	for name, content := range map[string]string{
		"not json":                     "{",
		"no paths":                     `{"cmdline":"x"}`,
		"version 2 without efi kernel": `{"version":2,"kernel":{"path":"vmlinux"},"initrd":{"path":"initrd.img"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(dir); err == nil {
				t.Error("Load() accepted a bad manifest")
			}
		})
	}
	t.Run("newer version", func(t *testing.T) {
		dir, _ := writeImage(t)
		rewriteManifest(t, dir, func(m map[string]any) { m["version"] = ManifestVersion + 1 })
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "manifest version 3, newer than the 2 this scc reads") {
			t.Errorf("Load() = %v, want the versions named", err)
		}
	})
}

// rewriteManifest edits dir's manifest.json as JSON.
func rewriteManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, ManifestName)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// An image built before images kept the EFI kernel (manifest version 1,
// without "version" and "efi_kernel") still boots ordinary VMs; a UEFI boot
// of it fails, saying to rebuild.
func TestManifestVersion1(t *testing.T) {
	dir, m := writeImage(t)
	rewriteManifest(t, dir, func(m map[string]any) { delete(m, "version"); delete(m, "efi_kernel") })
	old, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if old.Version != 1 || old.EFIKernel != (File{}) {
		t.Errorf("Load() = version %d, efi kernel %+v; want 1 and none", old.Version, old.EFIKernel)
	}
	if err := old.Verify(); err != nil {
		t.Errorf("Verify() = %v", err)
	}
	if k, err := old.KernelFor(false); err != nil || k != m.Kernel {
		t.Errorf("KernelFor(qboot) = %+v, %v; want %+v", k, err, m.Kernel)
	}
	_, err = old.KernelFor(true)
	if !errors.Is(err, ErrNoEFIKernel) || !strings.Contains(err.Error(), "scc guest build") || !strings.Contains(err.Error(), dir) {
		t.Errorf("KernelFor(uefi) = %v, want %v naming the image and how to rebuild it", err, ErrNoEFIKernel)
	}
	snp := vmm.Config{TEE: &vmm.TEEConfig{Type: vmm.TEESNP}}
	if err := old.Configure(&snp); !errors.Is(err, ErrNoEFIKernel) {
		t.Errorf("Configure(snp) = %v, want %v", err, ErrNoEFIKernel)
	}
}

// Configure gives a VM the kernel its firmware starts: the EFI kernel to
// confidential VMs and ordinary VMs with UEFI firmware, vmlinux to the
// others.
func TestManifestConfigure(t *testing.T) {
	dir, m := writeImage(t)
	ovmf, qboot, err := vmmtest.WriteFirmware(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  vmm.Config
		want File
	}{
		{"qboot", vmm.Config{Firmware: qboot}, m.Kernel},
		{"ovmf", vmm.Config{Firmware: ovmf}, m.EFIKernel},
		{"snp", vmm.Config{TEE: &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: ovmf}}, m.EFIKernel},
		{"tdx", vmm.Config{TEE: &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: ovmf}}, m.EFIKernel},
		{"snp from an igvm file", vmm.Config{TEE: &vmm.TEEConfig{Type: vmm.TEESNP, SNP: vmm.SNPConfig{IGVM: ovmf}}}, m.EFIKernel},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		if err := m.Configure(&cfg); err != nil {
			t.Errorf("%s: Configure() = %v", tt.name, err)
			continue
		}
		if cfg.Kernel != tt.want.Path || cfg.Initrd != m.Initrd.Path || cfg.Cmdline != m.Cmdline {
			t.Errorf("%s: Configure() set kernel %s, initrd %s, cmdline %q; want %s, %s, %q",
				tt.name, cfg.Kernel, cfg.Initrd, cfg.Cmdline, tt.want.Path, m.Initrd.Path, m.Cmdline)
		}
	}
	missing := vmm.Config{Firmware: filepath.Join(dir, "none.fd")}
	if err := m.Configure(&missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Configure() with a missing firmware = %v, want not-exist", err)
	}
}

func TestReadAgent(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readAgent(notELF); err == nil {
		t.Error("readAgent accepted a shell script")
	}
	if _, err := readAgent(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readAgent(missing) = %v", err)
	}
	static := filepath.Join(dir, "static")
	if err := os.WriteFile(static, fakeVmlinux(t, false), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readAgent(static); err != nil {
		t.Errorf("readAgent(static ELF) = %v", err)
	}
	// A dynamically linked system binary, where the machine has one.
	if f, err := elf.Open("/bin/true"); err == nil {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			if _, err := readAgent("/bin/true"); err == nil {
				t.Error("readAgent accepted dynamically linked /bin/true")
			}
		}
	}
}
