package initsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// newRoot is where the tmpfs that becomes the root is mounted first.
const newRoot = "/.root"

// SwitchRoot moves the initramfs contents but the file keep (the running
// executable, "/init") onto a tmpfs and makes that tmpfs the root of the
// calling process, which carries on there.
//
// The kernel's initial rootfs cannot be pivoted away from, so on it every
// container would have to be confined by chroot(2), which a process with
// CAP_SYS_CHROOT can escape. On a tmpfs root, containers get pivot_root(2).
// The initramfs files are removed as they are copied, so the guest does not
// hold them twice; keep stays behind, where the running process's mapping
// holds it anyway, and is reached through /proc/self/exe.
func SwitchRoot(keep string) error {
	if err := os.Mkdir(newRoot, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("switch root: mount tmpfs: %w", err)
	}
	if err := moveTree("/", newRoot, keep); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move tmpfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return nil
}

// moveTree copies the tree at src (not crossing into other filesystems or
// into dst) to dst, removing each file from src once copied. The file at
// keep (a path below src) is neither copied nor removed.
func moveTree(src, dst, keep string) error {
	var rootDev uint64
	if fi, err := os.Lstat(src); err == nil {
		rootDev = fi.Sys().(*syscall.Stat_t).Dev
	}
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dst {
			return filepath.SkipDir
		}
		if p == keep {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if d.IsDir() && p != src && st.Dev != rootDev {
			return filepath.SkipDir // a mount: not part of the initramfs
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, mode.Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
				dirs = append(dirs, p)
			}
			return nil
		case mode.IsRegular():
			if err := copyFile(p, target, mode.Perm()); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode&fs.ModeDevice != 0:
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("mknod %s: %w", target, err)
			}
		default:
			return nil
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		// The file lives on in dst; the initramfs copy only wastes memory.
		return os.Remove(p)
	})
	if err != nil {
		return err
	}
	// Empty directories of the initramfs go too, deepest first; one still
	// in use as a mount point stays.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
