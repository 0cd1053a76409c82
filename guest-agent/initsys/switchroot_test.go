package initsys

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMoveTree(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(src, ".root")
	files := map[string]string{
		"init":                         "agent",
		"etc/scc/modules":              "/lib/modules/x/a.ko\n",
		"lib/modules/x/kernel/fs/a.ko": "module",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("init", filepath.Join(src, "sbin-init")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(src, "init")
	if err := moveTree(src, dst, keep); err != nil {
		t.Fatal(err)
	}
	// The running executable stays where it is, and only there.
	if b, err := os.ReadFile(keep); err != nil || string(b) != "agent" {
		t.Errorf("kept file: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "init")); !os.IsNotExist(err) {
		t.Errorf("kept file copied too: %v", err)
	}
	delete(files, "init")
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, body)
		}
		if _, err := os.Stat(filepath.Join(src, name)); !os.IsNotExist(err) {
			t.Errorf("%s still in the source after the move", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "etc/scc/modules")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("a file lost its mode: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "sbin-init")); err != nil || l != "init" {
		t.Errorf("symlink: %q %v", l, err)
	}
	left, _ := os.ReadDir(src)
	if len(left) != 2 || left[0].Name() != ".root" || left[1].Name() != "init" {
		t.Errorf("source keeps %v, want only the destination and the kept file", left)
	}
}
