package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// poolConfig writes a shim configuration that keeps size VMs ready, with
// templates of the test's own.
func poolConfig(t *testing.T, name string, size int) string {
	t.Helper()
	cfgPath, _ := snapshotConfig(t, name, false)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b) + "\n[pool]\nsize = " + strconv.Itoa(size) + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// drainAtEnd stops the pool's VMs when the test ends, before the leak
// check (cleanups run last first).
func drainAtEnd(t *testing.T, cfgPath string) {
	t.Cleanup(func() {
		out, err := exec.Command(filepath.Join(env.binDir, "scc"), "pool", "drain", "--config", cfgPath).CombinedOutput()
		if err != nil {
			t.Errorf("scc pool drain: %v: %s", err, out)
		}
	})
}

type pooledVM struct{ id, dir string }

// readyVMs lists the ready VMs of `scc pool list`.
func readyVMs(t *testing.T, ctx context.Context, cfgPath string) []pooledVM {
	t.Helper()
	var vms []pooledVM
	for _, line := range strings.Split(scc(t, ctx, "pool", "list", "--config", cfgPath), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[2] == "ready" {
			vms = append(vms, pooledVM{id: f[1], dir: f[4]})
		}
	}
	return vms
}

// qemuPid reads the pid file of the VM whose state directory is dir.
func qemuPid(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitReady waits until the pool has n ready VMs.
func waitReady(t *testing.T, ctx context.Context, cfgPath string, n int) []pooledVM {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		vms := readyVMs(t, ctx, cfgPath)
		if len(vms) >= n {
			return vms
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool did not reach %d ready VMs (has %d)", n, len(vms))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startPooled starts a long-running container with cfgPath and returns
// its VM's QEMU pid.
func startPooled(t *testing.T, ctx context.Context, cfgPath, id string) int {
	t.Helper()
	startDetachedWith(t, ctx, cfgPath, id, "sleep", "1000")
	return qemuPid(t, filepath.Join(env.run, id))
}

// TestPool fills a pool, serves a sandbox from it, checks the refill, and
// replaces a pooled VM that died while idle.
func TestPool(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfgPath := poolConfig(t, "pool", 1)
	drainAtEnd(t, cfgPath)

	scc(t, ctx, "pool", "fill", "--config", cfgPath)
	vms := readyVMs(t, ctx, cfgPath)
	if len(vms) != 1 {
		t.Fatalf("after fill: %d ready VMs, want 1", len(vms))
	}
	pooled := qemuPid(t, vms[0].dir)

	// The sandbox runs in the pooled VM's QEMU.
	if pid := startPooled(t, ctx, cfgPath, "pool-a"); pid != pooled {
		t.Errorf("sandbox VM is QEMU %d, the pooled VM was %d", pid, pooled)
	}
	out, stderr, code := ctr(t, ctx, "", "task", "exec", "--exec-id", "e1", "pool-a", "cat", "/proc/sys/kernel/random/boot_id")
	if code != 0 || len(strings.TrimSpace(out)) != 36 {
		t.Fatalf("exec in pooled VM: exit %d, %q, %s", code, out, stderr)
	}

	// The shim refilled the pool in the background.
	vms = waitReady(t, ctx, cfgPath, 1)
	refilled := qemuPid(t, vms[0].dir)
	if refilled == pooled {
		t.Fatalf("pool still lists the taken VM")
	}

	// A pooled VM that died while idle is replaced without the sandbox
	// noticing.
	if err := syscall.Kill(refilled, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for processExists(refilled) {
		time.Sleep(20 * time.Millisecond)
	}
	pid := startPooled(t, ctx, cfgPath, "pool-b")
	if pid == refilled {
		t.Fatalf("sandbox got the dead VM")
	}
	if _, stderr, code := ctr(t, ctx, "", "task", "exec", "--exec-id", "e2", "pool-b", "true"); code != 0 {
		t.Fatalf("exec after a pooled VM died: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(vms[0].dir); !os.IsNotExist(err) {
		t.Errorf("dead pooled VM's directory %s is still there (%v)", vms[0].dir, err)
	}
}

// TestPoolDrain: draining stops every pooled VM and leaves no directory.
func TestPoolDrain(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfgPath := poolConfig(t, "drain", 2)
	drainAtEnd(t, cfgPath)
	scc(t, ctx, "pool", "fill", "--config", cfgPath)
	vms := readyVMs(t, ctx, cfgPath)
	if len(vms) != 2 {
		t.Fatalf("after fill: %d ready VMs, want 2", len(vms))
	}
	var pids []int
	for _, vm := range vms {
		pids = append(pids, qemuPid(t, vm.dir))
	}
	if out := scc(t, ctx, "pool", "drain", "--config", cfgPath); !strings.Contains(out, "stopped 2 pooled VMs") {
		t.Errorf("drain said %q", out)
	}
	for _, pid := range pids {
		if processExists(pid) {
			t.Errorf("pooled QEMU %d still runs after drain", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(env.run, "pool")); !os.IsNotExist(err) {
		t.Errorf("pool directory left after drain: %v", err)
	}
}

// processExists reports whether pid runs (zombies excluded).
func processExists(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestPoolKillShim kills the shim of a sandbox running in a pooled VM:
// that QEMU has no parent-death signal tied to the shim, so containerd's
// cleanup (the shim's delete action) must find and kill it.
func TestPoolKillShim(t *testing.T) {
	requireEnv(t)
	ctx := testContext(t)
	cfgPath := poolConfig(t, "poolshim", 1)
	drainAtEnd(t, cfgPath)
	scc(t, ctx, "pool", "fill", "--config", cfgPath)
	const id = "pool-shim"
	pid := startPooled(t, ctx, cfgPath, id)
	shim := pidOf(t, "containerd-shim-scc-v2", "-id\x00"+id+"\x00")
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, id, "STOPPED")
	deadline := time.Now().Add(20 * time.Second)
	for processExists(pid) {
		if time.Now().After(deadline) {
			t.Fatal("pooled QEMU outlived its dead shim's cleanup")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
