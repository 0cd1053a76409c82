package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

// Kernels the integration test boots, in order of preference. CI builds
// the guest image first and points SCC_TEST_KERNEL at its vmlinux.
var testKernels = []string{
	"/var/lib/scc/guest/vmlinux",
	"/var/cache/scc/kernel/vmlinux-test",
	"/var/cache/scc/kernel/x/boot/vmlinuz-*", // the unpacked Debian kernel package; qboot boots bzImage too
}

const bootMarker = "SCC-VMM-TEST-BOOTED"

// guestInit is /init of the test initramfs: it announces itself on the
// console, then prints a numbered tick every 100ms so the test can see the
// guest run, stop while paused, and continue after a restore.
const guestInit = `package main

import (
	"fmt"
	"time"
)

func main() {
	fmt.Println("` + bootMarker + `")
	for i := 0; ; i++ {
		fmt.Printf("tick %d\n", i)
		time.Sleep(100 * time.Millisecond)
	}
}
`

func testKernel(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("SCC_TEST_KERNEL"); k != "" {
		if _, err := os.Stat(k); err != nil {
			t.Fatalf("SCC_TEST_KERNEL: %v", err)
		}
		return k
	}
	for _, pattern := range testKernels {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	t.Skipf("no guest kernel: set SCC_TEST_KERNEL to a vmlinux or provide one of %v", testKernels)
	return ""
}

// buildInitramfs compiles guestInit statically and packs it as /init in a
// newc cpio archive, with the /dev/console node the kernel opens for init.
func buildInitramfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(guestInit), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "init")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v\n%s", err, out)
	}
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	w := cpioWriter{w: &buf}
	w.entry("dev", 0o040755, 0, nil)
	w.entry("dev/console", 0o020600, 5<<8|1, nil)
	w.entry("init", 0o100755, 0, initBin)
	w.entry("TRAILER!!!", 0, 0, nil)
	out := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// cpioWriter writes the "newc" cpio format the kernel unpacks into its
// initial rootfs.
type cpioWriter struct {
	w   io.Writer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, rdev uint32, data []byte) {
	c.ino++
	pad := func(n int) { c.w.Write(make([]byte, (4-n%4)%4)) }
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev>>8, rdev&0xff, len(name)+1, 0)
	io.WriteString(c.w, hdr)
	io.WriteString(c.w, name+"\x00")
	pad(len(hdr) + len(name) + 1)
	c.w.Write(data)
	pad(len(data))
}

// waitConsole waits until the console log satisfies ok, and returns it.
// want describes the wait in failure messages.
func waitConsole(t *testing.T, v *VM, want string, ok func(console string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(v.ConsoleLog())
		if ok(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("console has no %q after %v:\n%s\nqemu log:\n%s", want, timeout, b, vmm.Tail(v.logPath(), logTail))
		}
		select {
		case <-v.Done():
			t.Fatalf("qemu exited while waiting for %q: %v", want, v.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastTick returns the highest tick number on the console, -1 if none.
func lastTick(console string) int {
	n := -1
	for _, line := range strings.Split(console, "\n") {
		var i int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "tick %d", &i); err == nil && i > n {
			n = i
		}
	}
	return n
}

// firstTick returns the lowest tick number on the console, -1 if none.
func firstTick(console string) int {
	for _, line := range strings.Split(console, "\n") {
		var i int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "tick %d", &i); err == nil {
			return i
		}
	}
	return -1
}

func consoleSize(t *testing.T, v *VM) int64 {
	fi, err := os.Stat(v.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestBootPauseResumeSaveRestore boots a real guest under QEMU.
func TestBootPauseResumeSaveRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped in -short mode")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed", DefaultBinary)
	}
	if _, err := os.Stat(vmm.DefaultFirmware); err != nil {
		t.Skipf("firmware: %v", err)
	}
	kernel := testKernel(t)
	initrd := buildInitramfs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := vmm.Config{
		ID:        "vmm-test",
		StateDir:  filepath.Join(t.TempDir(), "vm1"),
		Kernel:    kernel,
		Initrd:    initrd,
		Cmdline:   "console=ttyS0 panic=-1 quiet",
		MemoryMiB: 256,
		Shares:    []vmm.Share{{Tag: "share0", Path: t.TempDir()}},
	}
	v, err := Driver{}.NewVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	t.Logf("kernel %s, accel %s", kernel, v.Accel())

	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := v.Pid()
	waitConsole(t, v, bootMarker, func(c string) bool { return strings.Contains(c, bootMarker) }, 20*time.Second)
	waitConsole(t, v, "tick 2", func(c string) bool { return lastTick(c) >= 2 }, 5*time.Second)

	// Paused: query-status says so and the guest prints nothing.
	if err := v.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if st, err := v.Status(ctx); err != nil || st != "paused" {
		t.Fatalf("Status after Pause = %q, %v; want paused", st, err)
	}
	size := consoleSize(t, v)
	time.Sleep(400 * time.Millisecond)
	if got := consoleSize(t, v); got != size {
		t.Errorf("console grew from %d to %d bytes while paused", size, got)
	}

	if err := v.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if st, err := v.Status(ctx); err != nil || st != "running" {
		t.Fatalf("Status after Resume = %q, %v; want running", st, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for consoleSize(t, v) == size {
		if time.Now().After(deadline) {
			t.Fatal("console did not grow after Resume")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Save leaves the VM paused; its last tick is where the restored guest
	// must carry on from.
	state := filepath.Join(t.TempDir(), "vm.state")
	if err := v.Save(ctx, state); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if fi, err := os.Stat(state); err != nil || fi.Size() == 0 {
		t.Fatalf("saved state: %v (size %v)", err, fi)
	}
	b, _ := os.ReadFile(v.ConsoleLog())
	savedTick := lastTick(string(b))

	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := v.Err(); err != nil {
		t.Errorf("Err() after Stop = %v", err)
	}
	if !processGone(pid) {
		t.Errorf("qemu pid %d still exists after Stop", pid)
	}
	if got := runtimeFiles(v); len(got) != 0 {
		t.Errorf("files left after Stop: %v", got)
	}

	// Restore into a new VM with its own state dir: it must continue the
	// saved guest, not boot a new one.
	cfg2 := v.Config()
	cfg2.StateDir = filepath.Join(t.TempDir(), "vm2")
	v2, err := Driver{}.NewVM(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v2.Stop(context.Background()) })
	if err := v2.Restore(ctx, state); err != nil {
		t.Fatalf("Restore: %v\nqemu log:\n%s", err, vmm.Tail(v2.logPath(), logTail))
	}
	if st, err := v2.Status(ctx); err != nil || st != "paused" {
		t.Fatalf("Status after Restore = %q, %v; want paused", st, err)
	}
	if err := v2.Resume(ctx); err != nil {
		t.Fatalf("Resume restored VM: %v", err)
	}
	want := savedTick + 3
	console := waitConsole(t, v2, fmt.Sprintf("tick %d", want), func(c string) bool { return lastTick(c) >= want }, 10*time.Second)
	if strings.Contains(console, bootMarker) || firstTick(console) <= savedTick {
		t.Errorf("restored guest booted afresh instead of continuing:\n%s", console)
	}
	if err := v2.Stop(ctx); err != nil {
		t.Fatalf("Stop restored VM: %v", err)
	}
	if got := runtimeFiles(v2); len(got) != 0 {
		t.Errorf("files left after Stop: %v", got)
	}
}

// TestGrow adds vCPUs and memory to a running guest and checks what QEMU
// then reports, and that Grow stops at the maxima.
func TestGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped in -short mode")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed", DefaultBinary)
	}
	if _, err := os.Stat(vmm.DefaultFirmware); err != nil {
		t.Skipf("firmware: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := Driver{}.NewVM(vmm.Config{
		ID:           "vmm-grow",
		StateDir:     filepath.Join(t.TempDir(), "vm"),
		Kernel:       testKernel(t),
		Initrd:       buildInitramfs(t),
		Cmdline:      "console=ttyS0 panic=-1 quiet",
		MemoryMiB:    256,
		MaxVCPUs:     3,
		MaxMemoryMiB: 768,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitConsole(t, v, bootMarker, func(c string) bool { return strings.Contains(c, bootMarker) }, 20*time.Second)

	if err := v.Grow(ctx, 2, 300); err != nil {
		t.Fatalf("Grow: %v", err)
	}
	if c, m := v.Size(); c != 2 || m != 384 {
		t.Errorf("Size after Grow(2, 300) = %d vcpus, %d MiB; want 2, 384 (whole memory blocks)", c, m)
	}
	var cpus []json.RawMessage
	if err := v.client().Execute(ctx, "query-cpus-fast", nil, &cpus); err != nil {
		t.Fatal(err)
	}
	var dimms []json.RawMessage
	if err := v.client().Execute(ctx, "query-memory-devices", nil, &dimms); err != nil {
		t.Fatal(err)
	}
	if len(cpus) != 2 || len(dimms) != 1 {
		t.Errorf("QEMU has %d vcpus and %d memory devices, want 2 and 1", len(cpus), len(dimms))
	}
	// Asking for what it has changes nothing.
	if err := v.Grow(ctx, 1, 256); err != nil {
		t.Errorf("Grow to less than the size: %v", err)
	}
	for _, tc := range []struct{ vcpus, mib int }{{4, 384}, {2, 1024}} {
		if err := v.Grow(ctx, tc.vcpus, tc.mib); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("Grow(%d, %d) beyond the maxima: %v, want failed precondition", tc.vcpus, tc.mib, err)
		}
	}
}

// TestSaveRestoreMemoryFile saves a VM whose memory is a shared file: the
// saved state leaves the memory out, and two VMs restored from it map the
// file privately: both carry on from the saved guest, and neither writes
// to the file.
func TestSaveRestoreMemoryFile(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped in -short mode")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed", DefaultBinary)
	}
	if _, err := os.Stat(vmm.DefaultFirmware); err != nil {
		t.Skipf("firmware: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	mem := filepath.Join(dir, "memory")
	cfg := vmm.Config{
		ID:        "vmm-memfile",
		StateDir:  filepath.Join(dir, "template"),
		Kernel:    testKernel(t),
		Initrd:    buildInitramfs(t),
		Cmdline:   "console=ttyS0 panic=-1 quiet",
		MemoryMiB: 256,
		Memory:    vmm.MemoryFile{File: mem, Shared: true},
	}
	v, err := Driver{}.NewVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitConsole(t, v, "tick 2", func(c string) bool { return lastTick(c) >= 2 }, 30*time.Second)
	state := filepath.Join(dir, "state")
	if err := v.Save(ctx, state); err != nil {
		t.Fatalf("Save: %v", err)
	}
	b, _ := os.ReadFile(v.ConsoleLog())
	savedTick := lastTick(string(b))
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The kernel and initramfs alone fill more guest memory than this:
	// pages in the stream would show.
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 4<<20 {
		t.Errorf("saved state is %d bytes: the memory was saved with it", fi.Size())
	}
	if fi, err := os.Stat(mem); err != nil || fi.Size() != 256<<20 {
		t.Fatalf("memory file: %v, size %v", err, fi)
	}
	before := fileDigest(t, mem)

	for _, name := range []string{"clone1", "clone2"} {
		c := v.Config()
		c.StateDir = filepath.Join(dir, name)
		c.Memory = vmm.MemoryFile{File: mem}
		clone, err := Driver{}.NewVM(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clone.Stop(context.Background()) })
		if err := clone.Restore(ctx, state); err != nil {
			t.Fatalf("Restore %s: %v\nqemu log:\n%s", name, err, vmm.Tail(clone.logPath(), logTail))
		}
		if err := clone.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		want := savedTick + 2
		console := waitConsole(t, clone, fmt.Sprintf("tick %d", want), func(c string) bool { return lastTick(c) >= want }, 20*time.Second)
		if strings.Contains(console, bootMarker) {
			t.Errorf("%s booted afresh instead of continuing:\n%s", name, console)
		}
		if err := clone.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if fileDigest(t, mem) != before {
		t.Error("restored VMs wrote to the template's memory file")
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
