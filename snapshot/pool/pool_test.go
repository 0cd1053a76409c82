package pool

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func addReady(t *testing.T, p Pool, key string) Entry {
	t.Helper()
	s, err := p.Add(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	return s.Entry
}

func TestAddCommitClaim(t *testing.T) {
	p := Pool{Dir: filepath.Join(t.TempDir(), "pool")}
	if _, err := p.Claim("k", filepath.Join(t.TempDir(), "sb")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("claim from an empty pool: %v, want ErrEmpty", err)
	}
	s, err := p.Add("k")
	if err != nil {
		t.Fatal(err)
	}
	if ReadID(s.Dir) != s.ID {
		t.Errorf("id file has %q, want %q", ReadID(s.Dir), s.ID)
	}
	// Not ready until committed: listed, but never claimed.
	es, _ := p.List()
	if len(es) != 1 || es[0].Ready {
		t.Fatalf("list while staging: %+v", es)
	}
	if _, err := p.Claim("k", filepath.Join(t.TempDir(), "sb")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("claimed a VM being added: %v", err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // distinct modification times
	second := addReady(t, p, "k")
	other := addReady(t, p, "other")

	dst := filepath.Join(t.TempDir(), "sb")
	e, err := p.Claim("k", dst)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != s.ID || e.Dir != dst || ReadID(dst) != s.ID {
		t.Errorf("claimed %+v, want the oldest (%s) moved to %s", e, s.ID, dst)
	}
	ready, _ := p.Ready("k")
	if len(ready) != 1 || ready[0].ID != second.ID {
		t.Errorf("ready after claim: %+v", ready)
	}
	keys, _ := p.Keys()
	if len(keys) != 2 {
		t.Errorf("keys: %v", keys)
	}
	if err := p.RemoveKey("other"); err == nil {
		t.Error("removed a key that still has a VM")
	}
	os.RemoveAll(other.Dir)
	if err := p.RemoveKey("other"); err != nil {
		t.Error(err)
	}
}

// TestClaimRace: of many sandboxes racing for few VMs, each VM goes to
// exactly one.
func TestClaimRace(t *testing.T) {
	p := Pool{Dir: filepath.Join(t.TempDir(), "pool")}
	for i := 0; i < 3; i++ {
		addReady(t, p, "k")
	}
	base := t.TempDir()
	var mu sync.Mutex
	got := map[string]int{}
	empty := 0
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e, err := p.Claim("k", filepath.Join(base, string(rune('a'+i))))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrEmpty):
				empty++
			case err != nil:
				t.Error(err)
			default:
				got[e.ID]++
			}
		}(i)
	}
	wg.Wait()
	if len(got) != 3 || empty != 9 {
		t.Errorf("claims %v, %d empty; want 3 VMs once each and 9 empty", got, empty)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("VM %s claimed %d times", id, n)
		}
	}
}

func TestLockFill(t *testing.T) {
	p := Pool{Dir: filepath.Join(t.TempDir(), "pool")}
	unlock, ok, err := p.LockFill("k", false)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := p.LockFill("k", false); err != nil || ok {
		t.Fatalf("second lock while held: ok %v, err %v", ok, err)
	}
	if _, ok, err := p.LockFill("other", false); err != nil || !ok {
		t.Fatalf("lock of another key: ok %v, err %v", ok, err)
	}
	unlock()
	unlock2, ok, err := p.LockFill("k", true)
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	unlock2()
}

// A VM that served a sandbox goes back with its own id and is claimed
// after the VMs that were ready before it.
func TestPut(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "pool")}
	older := addReady(t, p, "k")
	sb := filepath.Join(root, "sandbox")
	if err := os.Mkdir(sb, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sb, IDFile), []byte("first-sandbox"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := p.Put("k", sb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb); !os.IsNotExist(err) {
		t.Errorf("the sandbox directory is still there: %v", err)
	}
	if !e.Ready || ReadID(e.Dir) != "first-sandbox" {
		t.Errorf("put entry %+v with id %q", e, ReadID(e.Dir))
	}
	ready, _ := p.Ready("k")
	if len(ready) != 2 || ready[0].ID != older.ID || ready[1].ID != e.ID {
		t.Fatalf("ready after put: %+v, want %s then %s", ready, older.ID, e.ID)
	}
	for _, want := range []string{older.ID, e.ID} {
		got, err := p.Claim("k", filepath.Join(root, "next-"+want))
		if err != nil || got.ID != want {
			t.Fatalf("claim: %+v, %v; want %s", got, err, want)
		}
	}
}
