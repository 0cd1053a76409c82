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
	if err := moveTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, body)
		}
		if _, err := os.Stat(filepath.Join(src, name)); !os.IsNotExist(err) {
			t.Errorf("%s still in the source after the move", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init lost its mode: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "sbin-init")); err != nil || l != "init" {
		t.Errorf("symlink: %q %v", l, err)
	}
	left, _ := os.ReadDir(src)
	if len(left) != 1 || left[0].Name() != ".root" {
		t.Errorf("source keeps %v, want only the destination", left)
	}
}
