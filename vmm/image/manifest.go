package image

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sccontainers/scc/vmm"
)

// ManifestName is the manifest's file name in the image directory.
const ManifestName = "manifest.json"

// ManifestVersion is the version of the manifests Build writes.
//
// Version 1 (manifest.json without "version") images hold one kernel, the
// PVH vmlinux. Version 2 adds the kernel package's bzImage (EFIKernel),
// which UEFI firmware, and so every confidential VM, boots. Load reads
// both; a version 1 image fails only where the EFI kernel is needed
// (KernelFor), with ErrNoEFIKernel.
const ManifestVersion = 2

// ErrNoEFIKernel means the guest image has no kernel that UEFI firmware can
// start: it was built before images kept one.
var ErrNoEFIKernel = errors.New("guest image has no EFI kernel")

// ErrDigestMismatch is returned by Verify when a file or the command line
// no longer matches its recorded digest.
var ErrDigestMismatch = errors.New("digest mismatch")

// File is an image file and the hex SHA-256 of its contents.
type File struct {
	// Path is relative to the image directory in manifest.json, and
	// absolute once the manifest is loaded.
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Manifest describes a built guest image. Its digests are what the VM's
// launch measurement is computed from.
type Manifest struct {
	// Version is the manifest's format version (ManifestVersion); 1 when
	// manifest.json does not say.
	Version int `json:"version"`
	// Kernel is the uncompressed PVH vmlinux, which qboot starts fastest:
	// ordinary VMs boot it.
	Kernel File `json:"kernel"`
	// EFIKernel is the kernel package's bzImage, byte for byte, whose EFI
	// stub lets UEFI firmware (OVMF, TDVF) start it: VMs booting through
	// UEFI firmware, every confidential one among them, boot it, and their
	// launch measurements cover it. Empty in version 1 images.
	EFIKernel            File        `json:"efi_kernel,omitzero"`
	Initrd               File        `json:"initrd"`
	Cmdline              string      `json:"cmdline"`
	CmdlineSHA256        string      `json:"cmdline_sha256"`
	KernelRelease        string      `json:"kernel_release"`
	KernelPackage        string      `json:"kernel_package"`
	KernelPackageVersion string      `json:"kernel_package_version"`
	AgentSHA256          string      `json:"agent_sha256"`
	InitrdCompression    Compression `json:"initrd_compression"`
	// Modules are the module names in load order.
	Modules []string `json:"modules"`
}

// Load reads dir/manifest.json and resolves the file paths against dir.
func Load(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no guest image in %s (build it with `scc guest build` or `make guest`): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read guest image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, ManifestName), err)
	}
	if m.Version == 0 {
		m.Version = 1
	}
	switch {
	case m.Version > ManifestVersion:
		return nil, fmt.Errorf("guest image in %s has manifest version %d, newer than the %d this scc reads: upgrade scc or rebuild the image with it", dir, m.Version, ManifestVersion)
	case m.Kernel.Path == "" || m.Initrd.Path == "":
		return nil, fmt.Errorf("guest image manifest in %s lacks the kernel or initrd path", dir)
	case m.Version >= 2 && m.EFIKernel.Path == "":
		return nil, fmt.Errorf("guest image manifest in %s (version %d) lacks the EFI kernel path", dir, m.Version)
	}
	for _, f := range m.files() {
		if !filepath.IsAbs(f.Path) {
			f.Path = filepath.Join(dir, f.Path)
		}
	}
	return &m, nil
}

// files are the image's files the manifest names, as pointers into m.
func (m *Manifest) files() []*File {
	fs := []*File{&m.Kernel, &m.Initrd}
	if m.EFIKernel.Path != "" {
		fs = append(fs, &m.EFIKernel)
	}
	return fs
}

// Paths are the files of the image the manifest names: the kernels and
// the initrd, absolute once loaded.
func (m *Manifest) Paths() []string {
	var ps []string
	for _, f := range m.files() {
		ps = append(ps, f.Path)
	}
	return ps
}

// KernelFor returns the kernel a VM booting this image gets: the EFI
// kernel when its firmware is UEFI firmware (vmm.Config.UEFIBoot, true for
// every confidential VM), else the PVH vmlinux. It fails with an error
// wrapping ErrNoEFIKernel for a UEFI boot of a version 1 image.
func (m *Manifest) KernelFor(uefi bool) (File, error) {
	if !uefi {
		return m.Kernel, nil
	}
	if m.EFIKernel.Path == "" {
		return File{}, fmt.Errorf("%w: the image in %s (manifest version %d) holds only the PVH vmlinux, which UEFI firmware cannot start; rebuild it with `scc guest build` (or `make guest`)",
			ErrNoEFIKernel, filepath.Dir(m.Kernel.Path), m.Version)
	}
	return m.EFIKernel, nil
}

// Configure sets cfg's kernel, initrd and command line to the image's,
// with the kernel cfg's firmware starts (KernelFor of cfg.UEFIBoot). A VM
// launched from cfg and the launch measurement computed from it
// (vmm/confidential) then cover the same files.
func (m *Manifest) Configure(cfg *vmm.Config) error {
	uefi, err := cfg.UEFIBoot()
	if err != nil {
		return fmt.Errorf("guest image kernel: %w", err)
	}
	k, err := m.KernelFor(uefi)
	if err != nil {
		return err
	}
	cfg.Kernel, cfg.Initrd, cfg.Cmdline = k.Path, m.Initrd.Path, m.Cmdline
	return nil
}

// Verify re-hashes the kernels, the initrd and the command line and checks
// them against the manifest, so a VM never boots files other than the ones
// its expected measurement was computed from.
func (m *Manifest) Verify() error {
	what := map[*File]string{&m.Kernel: "kernel", &m.Initrd: "initrd", &m.EFIKernel: "efi kernel"}
	for _, f := range m.files() {
		got, err := hashFile(f.Path)
		if err != nil {
			return fmt.Errorf("verify %s: %w", what[f], err)
		}
		if !digestEqual(got, f.SHA256) {
			return fmt.Errorf("verify %s %s: %w", what[f], f.Path, ErrDigestMismatch)
		}
	}
	if !digestEqual(hashBytes([]byte(m.Cmdline)), m.CmdlineSHA256) {
		return fmt.Errorf("verify cmdline: %w", ErrDigestMismatch)
	}
	return nil
}

// write stores the manifest in dir with paths relative to dir, replacing
// any previous one atomically.
func (m *Manifest) write(dir string) error {
	rel := *m
	for _, f := range rel.files() {
		if filepath.IsAbs(f.Path) {
			p, err := filepath.Rel(dir, f.Path)
			if err != nil {
				return err
			}
			f.Path = p
		}
	}
	data, err := json.MarshalIndent(&rel, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ManifestName), append(data, '\n'), 0o644)
}

// digestEqual compares a computed digest with a recorded hex digest in
// constant time.
func digestEqual(got []byte, want string) bool {
	w, err := hex.DecodeString(want)
	if err != nil || len(w) != len(got) {
		return false
	}
	return subtle.ConstantTimeCompare(got, w) == 1
}

func hashBytes(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

func hashFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// writeFileAtomic writes data to a temporary file beside name and renames
// it over name, so readers never see a partial file.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
