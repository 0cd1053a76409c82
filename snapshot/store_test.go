package snapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyDependsOnEveryField(t *testing.T) {
	type cfg struct {
		Kernel string
		Memory int
	}
	a, _ := Key(cfg{"k1", 512})
	b, _ := Key(cfg{"k1", 512})
	c, _ := Key(cfg{"k1", 256})
	d, _ := Key(cfg{"k2", 512})
	if a != b {
		t.Error("equal configurations give different keys")
	}
	if a == c || a == d {
		t.Error("different configurations give the same key")
	}
}

func TestCreateLookup(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	ctx := context.Background()
	if _, ok := s.Lookup("k"); ok {
		t.Fatal("lookup found a template in an empty store")
	}
	calls := 0
	save := func(_ context.Context, f Files) error {
		calls++
		return os.WriteFile(f.State, []byte("vm state"), 0o600)
	}
	tmpl, err := s.Create(ctx, "k", map[string]int{"memory": 512}, save)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(tmpl.StatePath()); err != nil || string(b) != "vm state" {
		t.Errorf("state %q %v", b, err)
	}
	got, ok := s.Lookup("k")
	if !ok || got.Dir != tmpl.Dir {
		t.Fatalf("lookup after create: %+v %v", got, ok)
	}
	// The digest names the saved state.
	if want := fmt.Sprintf("%x", sha256.Sum256([]byte("vm state"))); tmpl.Digest != want || got.Digest != want {
		t.Errorf("digest %q (created), %q (looked up); want %q", tmpl.Digest, got.Digest, want)
	}
	if tmpl.HasMemory || got.HasMemory {
		t.Error("a template without a memory file has memory")
	}
	// A second Create reuses the template.
	if _, err := s.Create(ctx, "k", nil, save); err != nil || calls != 1 {
		t.Errorf("second create: %v, save called %d times", err, calls)
	}
	ts, err := s.List()
	if err != nil || len(ts) != 1 {
		t.Errorf("list: %v %v", ts, err)
	}
	if err := s.Remove("k"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("k"); ok {
		t.Error("template still there after remove")
	}
}

// TestCreateWithMemory: a template whose save wrote a memory file has it,
// its digest covers state and memory, and it is incomplete without it.
func TestCreateWithMemory(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tmpl, err := s.Create(context.Background(), "k", nil, func(_ context.Context, f Files) error {
		if err := os.WriteFile(f.State, []byte("devices"), 0o600); err != nil {
			return err
		}
		return os.WriteFile(f.Memory, []byte("pages"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tmpl.HasMemory {
		t.Fatal("template has no memory")
	}
	if b, err := os.ReadFile(tmpl.MemoryPath()); err != nil || string(b) != "pages" {
		t.Errorf("memory %q %v", b, err)
	}
	if want := fmt.Sprintf("%x", sha256.Sum256([]byte("devicespages"))); tmpl.Digest != want {
		t.Errorf("digest %s, want %s (state, then memory)", tmpl.Digest, want)
	}
	if got, ok := s.Lookup("k"); !ok || !got.HasMemory || got.Digest != tmpl.Digest {
		t.Errorf("lookup: %+v %v", got, ok)
	}
	if err := os.Remove(tmpl.MemoryPath()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("k"); ok {
		t.Error("a template whose memory file is gone is still found")
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	boom := errors.New("boom")
	_, err := s.Create(context.Background(), "k", nil, func(_ context.Context, f Files) error {
		os.WriteFile(f.State, []byte("half"), 0o600)
		os.WriteFile(f.Memory, []byte("half"), 0o600)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if _, ok := s.Lookup("k"); ok {
		t.Error("a failed create left a template")
	}
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestCreateIsExclusive holds the lock from another process and checks
// Create refuses rather than racing it.
func TestCreateIsExclusive(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) is not installed")
	}
	s := Store{Dir: t.TempDir()}
	lock := filepath.Join(s.Dir, "k.lock")
	holder := exec.Command("flock", lock, "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// Wait until the holder has the lock.
	for i := 0; exec.Command("flock", "-n", lock, "true").Run() == nil; i++ {
		if i > 300 {
			t.Fatal("the holder never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := s.Create(context.Background(), "k", nil, func(context.Context, Files) error { return nil })
	if !errors.Is(err, ErrBusy) {
		t.Errorf("create while locked: %v, want ErrBusy", err)
	}
}
