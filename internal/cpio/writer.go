// Package cpio writes archives in the "newc" (SVR4, no CRC) cpio format, the
// format the Linux kernel unpacks as an initramfs.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// File type bits of Header.Mode, as in stat(2).
const (
	TypeDir     = 0o040000
	TypeChar    = 0o020000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	typeMask    = 0o170000
)

const (
	magic   = "070701"
	trailer = "TRAILER!!!"
	// headerLen is the length of the fixed part of a newc header: the magic
	// and thirteen 8-digit hex fields.
	headerLen = 6 + 13*8
)

// Header describes one archive member.
type Header struct {
	Name  string // path inside the archive, without a leading "/"
	Mode  uint32 // file type bits and permissions
	UID   uint32
	GID   uint32
	Mtime int64 // seconds since the epoch; 0 keeps archives reproducible
	Size  int64 // bytes of content; regular files and symlinks only
	// Ino is the inode number; 0 lets the writer number members in order,
	// which keeps archives reproducible.
	Ino uint32
	// Nlink is the link count; 0 means 2 for directories and 1 otherwise.
	Nlink     uint32
	RdevMajor uint32 // device nodes only
	RdevMinor uint32
}

// Writer writes a newc archive. Close must be called to write the trailer.
type Writer struct {
	w       io.Writer
	remain  int64 // content bytes still owed for the current member
	pad     int   // padding owed after the current member's content
	nextIno uint32
	closed  bool
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, nextIno: 1}
}

// ErrWriteTooLong is returned when content exceeds the Size of its header.
var ErrWriteTooLong = errors.New("cpio: write too long")

// WriteHeader finishes the previous member and starts a new one. The
// member's content, Size bytes, is then written with Write.
func (w *Writer) WriteHeader(h *Header) error {
	if w.closed {
		return errors.New("cpio: write after close")
	}
	if err := w.finish(); err != nil {
		return err
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" || name == trailer || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("cpio: invalid name %q", h.Name)
	}
	typ := h.Mode & typeMask
	if h.Size < 0 || h.Size > 0xffffffff {
		return fmt.Errorf("cpio: %s: size %d out of range", name, h.Size)
	}
	if h.Size != 0 && typ != TypeReg && typ != TypeSymlink {
		return fmt.Errorf("cpio: %s: only regular files and symlinks have content", name)
	}
	ino := h.Ino
	if ino == 0 {
		ino = w.nextIno
		w.nextIno++
	}
	nlink := h.Nlink
	if nlink == 0 {
		nlink = 1
		if typ == TypeDir {
			nlink = 2
		}
	}
	if err := w.header(name, ino, h.Mode, h.UID, h.GID, nlink, h.Mtime, h.Size, h.RdevMajor, h.RdevMinor); err != nil {
		return err
	}
	w.remain = h.Size
	w.pad = padding(h.Size)
	return nil
}

// Write writes content of the current member.
func (w *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > w.remain {
		n, err := w.write(p[:w.remain])
		w.remain -= int64(n)
		if err == nil {
			err = ErrWriteTooLong
		}
		return n, err
	}
	n, err := w.write(p)
	w.remain -= int64(n)
	return n, err
}

// Close finishes the last member and writes the trailer. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.finish(); err != nil {
		return err
	}
	w.closed = true
	return w.header(trailer, 0, 0, 0, 0, 1, 0, 0, 0, 0)
}

// finish checks the current member is complete and pads it.
func (w *Writer) finish() error {
	if w.remain != 0 {
		return fmt.Errorf("cpio: member is %d bytes short of its size", w.remain)
	}
	if w.pad > 0 {
		if _, err := w.write(make([]byte, w.pad)); err != nil {
			return err
		}
		w.pad = 0
	}
	return nil
}

func (w *Writer) header(name string, ino, mode, uid, gid, nlink uint32, mtime, size int64, rmaj, rmin uint32) error {
	namesize := len(name) + 1
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, mode, uid, gid, nlink, uint32(mtime), uint32(size),
		0, 0, rmaj, rmin, namesize, 0)
	buf := make([]byte, 0, headerLen+namesize+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, padding(int64(len(buf))))...)
	_, err := w.write(buf)
	return err
}

func (w *Writer) write(p []byte) (int, error) {
	return w.w.Write(p)
}

// padding returns the bytes needed to reach a multiple of four.
func padding(n int64) int {
	return int((4 - n%4) % 4)
}
