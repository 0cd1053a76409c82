package monitor

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// note encodes one ELF note.
func note(name string, typ uint32, desc []byte) []byte {
	pad := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, pad(append([]byte(name), 0))...)
	return append(b, pad(desc)...)
}

func TestBuildID(t *testing.T) {
	id := []byte{0xeb, 0x4f, 0xbc, 0xd0, 0x37}
	notes := append(note("Xen", 3, []byte("xen")), note("Linux", 6, []byte{1})...)
	notes = append(notes, note("GNU", 3, id)...)
	got, err := buildID(notes)
	if err != nil || !bytes.Equal(got, id) {
		t.Fatalf("buildID = %x, %v; want %x", got, err, id)
	}
	for name, b := range map[string][]byte{
		"none":      note("Linux", 6, []byte{1}),
		"truncated": note("GNU", 3, id)[:14],
		"empty":     nil,
	} {
		if _, err := buildID(b); err == nil {
			t.Errorf("%s: buildID found an ID", name)
		}
	}
}

func TestTreeDigest(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("init", "the executable", 0o755)
	write("etc/scc/modules", "a.ko\n", 0o644)
	write("lib/modules/a.ko", "module", 0o644)
	if err := os.Symlink("lib", filepath.Join(root, "usr-lib")); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(root, "init")
	digest := func() [32]byte {
		t.Helper()
		d, err := treeDigest(root, exe)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d0 := digest()
	if digest() != d0 {
		t.Fatal("the same tree gives two digests")
	}
	write("init", "another executable", 0o755)
	if digest() != d0 {
		t.Error("the excluded executable changed the digest")
	}
	for name, change := range map[string]func(){
		"content":  func() { write("lib/modules/a.ko", "patched", 0o644) },
		"mode":     func() { write("lib/modules/a.ko", "patched", 0o755) },
		"new file": func() { write("lib/modules/b.ko", "", 0o644) },
		"link":     func() { os.Remove(filepath.Join(root, "usr-lib")); os.Symlink("etc", filepath.Join(root, "usr-lib")) },
	} {
		before := digest()
		change()
		if digest() == before {
			t.Errorf("a change of %s left the digest as it was", name)
		}
	}
}
