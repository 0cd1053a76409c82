package kbs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreCorruption(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.put("a/b/c", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, storeDataFile))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-1] ^= 1
	for name, content := range map[string][]byte{
		"bit flipped": flipped,
		"truncated":   data[:10],
		"other magic": append([]byte("XXXXXXXX"), data[8:]...),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, storeDataFile), content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := openStore(dir); err == nil {
				t.Fatal("openStore() accepted a corrupted file")
			}
		})
	}
	if _, err := s.get("x/y/z"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get(unknown) = %v, want %v", err, ErrNotFound)
	}
}
