package shim

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOverBudget: the pool stops growing at its memory budget and at the
// bound on all VMs of the state directory.
func TestOverBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.VM.MemoryMiB = 256
	p := vmPool(cfg)
	add := func(mem int) {
		s, err := p.Add("k")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir, memoryFile), []byte(strconv.Itoa(mem)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if why := overBudget(cfg); why != "" {
		t.Fatalf("empty pool over budget: %s", why)
	}
	add(256)
	add(512)

	cfg.Pool.MemoryBudgetMiB = 1024
	if why := overBudget(cfg); why != "" {
		t.Errorf("768 MiB pooled + 256 within 1024: %s", why)
	}
	cfg.Pool.MemoryBudgetMiB = 1000
	if why := overBudget(cfg); !strings.Contains(why, "memory budget") {
		t.Errorf("768 MiB pooled + 256 over 1000: %q", why)
	}

	cfg.Pool.MemoryBudgetMiB = 0
	cfg.Pool.MaxVMs = 3
	if why := overBudget(cfg); why != "" {
		t.Errorf("2 VMs under max 3: %s", why)
	}
	// A sandbox directory counts only while its QEMU runs: this one has
	// none.
	if err := os.Mkdir(filepath.Join(cfg.StateDir, "sandbox"), 0o700); err != nil {
		t.Fatal(err)
	}
	if why := overBudget(cfg); why != "" {
		t.Errorf("a sandbox without a VM counted: %s", why)
	}
	cfg.Pool.MaxVMs = 2
	if why := overBudget(cfg); !strings.Contains(why, "max_vms") {
		t.Errorf("2 VMs at max 2: %q", why)
	}
}
