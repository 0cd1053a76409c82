package erofs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// whiteoutPrefix marks an OCI whiteout entry. Whiteouts delete files of
// lower layers; an erofs image of one layer has nothing to delete, so they
// are skipped here. Mounting the images as overlay lowers will need them
// turned into overlayfs whiteouts (0:0 character devices and the opaque
// xattr) instead; that is not done yet.
const whiteoutPrefix = ".wh."

// Unpack extracts an uncompressed layer tar into dir. Every path is
// resolved inside dir (symlinks in the archive cannot point the
// extraction outside it). Ownership and device nodes are restored only
// when running as root.
func Unpack(r io.Reader, dir string) error {
	root := os.Geteuid() == 0
	tr := tar.NewReader(r)
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" && hdr.Typeflag == tar.TypeDir {
			continue
		}
		if strings.HasPrefix(path.Base(name), whiteoutPrefix) {
			continue
		}
		target, err := securejoin.SecureJoin(dir, name)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("create parent of %s: %w", hdr.Name, err)
		}
		mode := tarMode(hdr.Mode)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("mkdir %s: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		case tar.TypeReg:
			if err := writeFile(target, tr); err != nil {
				return fmt.Errorf("write %s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("symlink %s: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			src, err := securejoin.SecureJoin(dir, path.Clean("/"+hdr.Linkname))
			if err != nil {
				return fmt.Errorf("resolve link target of %s: %w", hdr.Name, err)
			}
			_ = os.Remove(target)
			if err := os.Link(src, target); err != nil {
				return fmt.Errorf("hardlink %s: %w", hdr.Name, err)
			}
			continue // the link shares the target's metadata
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if !root && hdr.Typeflag != tar.TypeFifo {
				continue
			}
			m := uint32(unix.S_IFIFO)
			switch hdr.Typeflag {
			case tar.TypeChar:
				m = unix.S_IFCHR
			case tar.TypeBlock:
				m = unix.S_IFBLK
			}
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(target, m|uint32(mode.Perm()), int(dev)); err != nil {
				return fmt.Errorf("mknod %s: %w", hdr.Name, err)
			}
		default:
			continue // PAX headers are consumed by archive/tar; others are not file system objects
		}
		if root {
			if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("chown %s: %w", hdr.Name, err)
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(target, mode); err != nil {
				return fmt.Errorf("chmod %s: %w", hdr.Name, err)
			}
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeSymlink {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	// Directory times last: creating their entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].path, dirs[i].mtime, dirs[i].mtime)
	}
	return nil
}

func tarMode(m int64) os.FileMode {
	mode := os.FileMode(m).Perm()
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func writeFile(target string, r io.Reader) error {
	_ = os.Remove(target)
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
