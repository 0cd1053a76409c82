package shim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sccontainers/scc/snapshot/pool"
	"github.com/sccontainers/scc/vmm"
)

func TestReuseKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.VM.QEMU = "/bin/true" // any executable: the key names its size and time
	img := guestFiles{kernel: "/k", initrd: "/i", cmdline: "console=ttyS0", kernelSHA256: "aa", initrdSHA256: "bb", snapshottable: true}
	vc := vmConfig(cfg, img, "a", "/run/scc/a", "/run/scc/a/shared")
	if _, ok := reuseKey(cfg, img, vc); ok {
		t.Error("a configuration that does not reuse VMs has a reuse key")
	}
	cfg.VM.Start = StartReuse
	vc = vmConfig(cfg, img, "a", "/run/scc/a", "/run/scc/a/shared")
	key, ok := reuseKey(cfg, img, vc)
	if !ok || !IsReusePoolKey(key) || len(key) != 24 {
		t.Fatalf("reuse key %q, %v", key, ok)
	}
	if other, _ := reuseKey(cfg, img, vmConfig(cfg, img, "b", "/run/scc/b", "/run/scc/b/shared")); other != key {
		t.Errorf("two sandboxes of one configuration: keys %q and %q", key, other)
	}
	bigger := cfg
	bigger.VM.MemoryMiB *= 2
	if k, _ := reuseKey(bigger, img, vmConfig(bigger, img, "a", "/run/scc/a", "/run/scc/a/shared")); k == key {
		t.Error("VMs of two sizes share a reuse key")
	}
	own := img
	own.snapshottable = false
	if _, ok := reuseKey(cfg, own, vc); ok {
		t.Error("a VM of an unknown kernel is reused")
	}
	many := vc
	many.Net = make([]vmm.NetDevice, vc.HotplugPorts+1)
	if _, ok := reuseKey(cfg, img, many); ok {
		t.Error("a VM with more interfaces than hotplug ports is reused")
	}
}

// What a sandbox left in its VM's directory goes; the VM's own files
// stay.
func TestRemoveTenantFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"qmp.sock", "agent.sock", "console.log", pool.IDFile, shimPidFile, ForwardStatsName} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"shared", tpmDirName} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeTenantFiles(dir); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{"qmp.sock": true, "agent.sock": true, "console.log": true, pool.IDFile: true, "shared": true, tpmDirName: true, shimPidFile: false, ForwardStatsName: false} {
		if _, err := os.Stat(filepath.Join(dir, f)); (err == nil) != want {
			t.Errorf("%s there: %v, want %v", f, err == nil, want)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "shared", "ctr"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := removeTenantFiles(dir); !errors.Is(err, errNotReusable) {
		t.Errorf("with a container's directory left in shared: %v, want errNotReusable", err)
	}
}

func TestReadGeneration(t *testing.T) {
	dir := t.TempDir()
	if _, err := readGeneration(dir); err == nil {
		t.Error("a directory without a generation has one")
	}
	for v, ok := range map[string]bool{"3\n": true, "0": false, "x": false} {
		os.WriteFile(filepath.Join(dir, generationFile), []byte(v), 0o600)
		if g, err := readGeneration(dir); (err == nil) != ok || (ok && g != 3) {
			t.Errorf("generation file %q: %d, %v", v, g, err)
		}
	}
}
