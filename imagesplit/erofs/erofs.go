// Package erofs turns an OCI layer into an erofs image with mkfs.erofs
// (erofs-utils), the read-only file system the guest mounts a
// non-confidential layer from, under dm-verity.
package erofs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// BlockSize is the erofs block size; images are padded to a multiple of
// it so that dm-verity covers every byte.
const BlockSize = 4096

// ErrNoMkfs reports that mkfs.erofs is not installed.
var ErrNoMkfs = errors.New("mkfs.erofs not found (install erofs-utils)")

// Options tune the image.
type Options struct {
	// UUID is the file system UUID ("xxxxxxxx-xxxx-..."); a fixed one,
	// with the fixed build time, makes the image a function of the layer
	// alone, so its digest can be recomputed and cached.
	UUID string
	// TempDir is where the layer is unpacked; "" means os.TempDir().
	TempDir string
}

// Build unpacks the uncompressed layer tar read from layer and writes an
// erofs image of it to out.
func Build(ctx context.Context, layer io.Reader, out string, o Options) error {
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return ErrNoMkfs
	}
	tmp, err := os.MkdirTemp(o.TempDir, "scc-erofs-")
	if err != nil {
		return fmt.Errorf("create unpack dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("create unpack dir: %w", err)
	}
	if err := Unpack(layer, root); err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	// -T0 fixes the superblock build time; --preserve-mtime keeps each
	// file's own time from the tar; -x-1 drops host xattrs (selinux
	// labels of the unpack dir) that are not the layer's.
	args := []string{"--quiet", "-T0", "--preserve-mtime", "-x-1"}
	if o.UUID != "" {
		args = append(args, "-U"+o.UUID)
	}
	args = append(args, out, root)
	cmd := exec.CommandContext(ctx, mkfs, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.erofs: %w: %s", err, b)
	}
	return padToBlock(out)
}

func padToBlock(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("stat image: %w", err)
	}
	if r := st.Size() % BlockSize; r != 0 {
		if err := os.Truncate(p, st.Size()+BlockSize-r); err != nil {
			return fmt.Errorf("pad image: %w", err)
		}
	}
	return nil
}
