package cpio

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestWriterBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(&Header{Name: "/init", Mode: TypeReg | 0o755, Size: 3, Mtime: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	want := "070701" +
		"00000001" + "000081ed" + "00000000" + "00000000" + "00000001" + "00000001" + "00000003" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000005" + "00000000" +
		"init\x00" + "\x00" + // 110+5 bytes, padded to 116
		"abc\x00" + // content padded to 4
		"070701" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "0000000b" + "00000000" +
		"TRAILER!!!\x00" + "\x00\x00\x00" // 110+11 bytes, padded to 124
	if got := buf.String(); got != want {
		t.Errorf("archive bytes:\n got %q\nwant %q", got, want)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(w *Writer) error
	}{
		{"empty name", func(w *Writer) error { return w.WriteHeader(&Header{Name: "/", Mode: TypeDir}) }},
		{"trailer name", func(w *Writer) error { return w.WriteHeader(&Header{Name: trailer, Mode: TypeReg}) }},
		{"content on directory", func(w *Writer) error { return w.WriteHeader(&Header{Name: "d", Mode: TypeDir, Size: 1}) }},
		{"write too long", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg, Size: 1}); err != nil {
				return err
			}
			_, err := w.Write([]byte("ab"))
			if !errors.Is(err, ErrWriteTooLong) {
				return nil
			}
			return err
		}},
		{"short content", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg, Size: 2}); err != nil {
				return err
			}
			if _, err := w.Write([]byte("a")); err != nil {
				return err
			}
			return w.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(NewWriter(&bytes.Buffer{})); err == nil {
				t.Error("want an error")
			}
		})
	}
}

// TestRoundTrip unpacks an archive with the system cpio, as the kernel's
// initramfs unpacker would see it.
func TestRoundTrip(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio(1) not installed (apt-get install cpio)")
	}
	root := os.Geteuid() == 0

	type member struct {
		hdr  Header
		data string
	}
	members := []member{
		{hdr: Header{Name: "dev", Mode: TypeDir | 0o755}},
		{hdr: Header{Name: "etc", Mode: TypeDir | 0o755}},
		{hdr: Header{Name: "etc/scc", Mode: TypeDir | 0o700}},
		{hdr: Header{Name: "etc/scc/modules", Mode: TypeReg | 0o644}, data: "lib/modules/x/a.ko\n"},
		{hdr: Header{Name: "init", Mode: TypeReg | 0o755}, data: "#!/bin/sh\necho odd-length\n"},
		{hdr: Header{Name: "empty", Mode: TypeReg | 0o600}},
		{hdr: Header{Name: "link", Mode: TypeSymlink | 0o777}, data: "init"},
	}
	if root {
		members = append(members, member{hdr: Header{Name: "dev/null", Mode: TypeChar | 0o666, RdevMajor: 1, RdevMinor: 3}})
	}

	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range members {
		h := m.hdr
		h.Size = int64(len(m.data))
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cmd := exec.Command(cpioBin, "-i", "--make-directories", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}

	for _, m := range members {
		path := filepath.Join(dir, m.hdr.Name)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Errorf("%s: %v", m.hdr.Name, err)
			continue
		}
		if got, want := uint32(fi.Mode().Perm()), m.hdr.Mode&0o777; got != want && m.hdr.Mode&typeMask != TypeSymlink {
			t.Errorf("%s: perm %o, want %o", m.hdr.Name, got, want)
		}
		switch m.hdr.Mode & typeMask {
		case TypeReg:
			data, err := os.ReadFile(path)
			if err != nil || string(data) != m.data {
				t.Errorf("%s: content %q (%v), want %q", m.hdr.Name, data, err, m.data)
			}
		case TypeSymlink:
			if target, err := os.Readlink(path); err != nil || target != m.data {
				t.Errorf("%s: link %q (%v), want %q", m.hdr.Name, target, err, m.data)
			}
		case TypeDir:
			if !fi.IsDir() {
				t.Errorf("%s: not a directory", m.hdr.Name)
			}
		case TypeChar:
			if fi.Mode()&os.ModeCharDevice == 0 {
				t.Errorf("%s: mode %v, want a char device", m.hdr.Name, fi.Mode())
			}
		}
	}
}
