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
)

// writeImage writes a fake image directory and its manifest.
func writeImage(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	kernel, initrd := []byte("kernel bytes"), []byte("initrd bytes")
	for name, data := range map[string][]byte{VmlinuxName: kernel, InitrdName: initrd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const cmdline = "console=ttyS0 quiet"
	m := &Manifest{
		Kernel:        File{Path: filepath.Join(dir, VmlinuxName), SHA256: hex.EncodeToString(hashBytes(kernel))},
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
	for _, key := range []string{"kernel", "initrd", "cmdline", "cmdline_sha256", "kernel_release", "kernel_package", "agent_sha256", "modules"} {
		if _, ok := onDisk[key]; !ok {
			t.Errorf("manifest.json lacks %q", key)
		}
	}

	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kernel != m.Kernel || got.Initrd != m.Initrd || got.Cmdline != m.Cmdline || strings.Join(got.Modules, ",") != "virtio,virtio_pci" {
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
		"not json": "{",
		"no paths": `{"cmdline":"x"}`,
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
