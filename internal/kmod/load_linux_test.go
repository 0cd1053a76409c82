package kmod

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Loading real modules is covered by the guest image boot test in
// vmm/image; these cases must fail before any module reaches the kernel.
func TestLoadListErrors(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/scc"), 0o755); err != nil {
		t.Fatal(err)
	}
	list := "etc/scc/modules"
	if err := os.WriteFile(filepath.Join(root, list), []byte("lib/modules/none/missing.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("missing list", func(t *testing.T) {
		err := LoadList(context.Background(), root, "etc/scc/nothing")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want not-exist", err)
		}
	})
	t.Run("missing module file", func(t *testing.T) {
		err := LoadList(context.Background(), root, list)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want not-exist", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := LoadList(ctx, root, list)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}
