// Package imagetest writes guest images of stand-in files for the tests of
// the image package's users.
package imagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/sccontainers/scc/vmm/image"
	"github.com/sccontainers/scc/vmm/vmmtest"
)

// Write writes a guest image into dir as `scc guest build` leaves it, with
// stand-in kernels (an ELF vmlinux, a bzImage with an EFI stub) and the
// given initrd content and command line, and returns its loaded manifest.
func Write(dir string, initrd []byte, cmdline string) (*image.Manifest, error) {
	files := map[string][]byte{
		image.VmlinuxName: []byte("\x7fELF\x02\x01\x01\x00 stand-in vmlinux"),
		image.VmlinuzName: vmmtest.EFIKernel([]byte("stand-in vmlinuz")),
		image.InitrdName:  initrd,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	raw, err := json.Marshal(image.Manifest{
		Version:       image.ManifestVersion,
		Kernel:        image.File{Path: image.VmlinuxName, SHA256: sum(files[image.VmlinuxName])},
		EFIKernel:     image.File{Path: image.VmlinuzName, SHA256: sum(files[image.VmlinuzName])},
		Initrd:        image.File{Path: image.InitrdName, SHA256: sum(initrd)},
		Cmdline:       cmdline,
		CmdlineSHA256: sum([]byte(cmdline)),
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, image.ManifestName), raw, 0o644); err != nil {
		return nil, err
	}
	return image.Load(dir)
}

// AsVersion1 rewrites the manifest in dir as images built before they kept
// the EFI kernel had it: without "version" and "efi_kernel".
func AsVersion1(dir string) error {
	p := filepath.Join(dir, image.ManifestName)
	raw, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	delete(m, "version")
	delete(m, "efi_kernel")
	if raw, err = json.Marshal(m); err != nil {
		return err
	}
	return os.WriteFile(p, raw, 0o644)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
