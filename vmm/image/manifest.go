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
)

// ManifestName is the manifest's file name in the image directory.
const ManifestName = "manifest.json"

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
	Kernel               File        `json:"kernel"`
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
	if m.Kernel.Path == "" || m.Initrd.Path == "" {
		return nil, fmt.Errorf("guest image manifest in %s lacks the kernel or initrd path", dir)
	}
	for _, f := range []*File{&m.Kernel, &m.Initrd} {
		if !filepath.IsAbs(f.Path) {
			f.Path = filepath.Join(dir, f.Path)
		}
	}
	return &m, nil
}

// Verify re-hashes the kernel, the initrd and the command line and checks
// them against the manifest, so a VM never boots files other than the ones
// its expected measurement was computed from.
func (m *Manifest) Verify() error {
	for _, f := range []struct {
		what string
		File
	}{{"kernel", m.Kernel}, {"initrd", m.Initrd}} {
		got, err := hashFile(f.Path)
		if err != nil {
			return fmt.Errorf("verify %s: %w", f.what, err)
		}
		if !digestEqual(got, f.SHA256) {
			return fmt.Errorf("verify %s %s: %w", f.what, f.Path, ErrDigestMismatch)
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
	for _, f := range []*File{&rel.Kernel, &rel.Initrd} {
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
