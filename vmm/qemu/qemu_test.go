package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

// newFakeVM returns a VM whose "QEMU" is this test binary behaving as mode.
func newFakeVM(t *testing.T, mode string) *VM {
	t.Helper()
	t.Setenv(fakeQEMUEnv, mode)
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Driver{Binary: self}.NewVM(vmm.Config{
		ID:          "fake",
		StateDir:    filepath.Join(dir, "state"),
		Kernel:      file("vmlinux"),
		Firmware:    file("bios.rom"),
		Accel:       vmm.AccelTCG,
		BootTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	return v
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runtimeFiles lists the sockets and pid file present in the state dir.
func runtimeFiles(v *VM) []string {
	var found []string
	for _, name := range []string{QMPSocketName, vmm.AgentSocketName, PidFileName} {
		if _, err := os.Stat(filepath.Join(v.cfg.StateDir, name)); err == nil {
			found = append(found, name)
		}
	}
	return found
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func wantPrecondition(t *testing.T, what string, err error) {
	t.Helper()
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("%s: err = %v, want ErrFailedPrecondition", what, err)
	}
}

func TestLifecycle(t *testing.T) {
	v := newFakeVM(t, fakeOK)
	ctx := ctxT(t)

	if v.Pid() != 0 {
		t.Errorf("Pid() before Start = %d, want 0", v.Pid())
	}
	wantPrecondition(t, "Pause before Start", v.Pause(ctx))

	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := v.Pid()
	if pid <= 0 || processGone(pid) {
		t.Fatalf("Pid() = %d after Start, want a live process", pid)
	}
	if got := runtimeFiles(v); len(got) != 3 {
		t.Errorf("runtime files after Start = %v, want qmp.sock, agent.sock and qemu.pid", got)
	}
	if v.AgentAddr() != filepath.Join(v.cfg.StateDir, "agent.sock") || v.ConsoleLog() != filepath.Join(v.cfg.StateDir, "console.log") {
		t.Errorf("AgentAddr() = %q, ConsoleLog() = %q", v.AgentAddr(), v.ConsoleLog())
	}
	wantPrecondition(t, "second Start", v.Start(ctx))
	wantPrecondition(t, "Resume while running", v.Resume(ctx))

	steps := []struct {
		name string
		do   func(context.Context) error
		want string
	}{
		{"pause", v.Pause, "paused"},
		{"resume", v.Resume, "running"},
		{"pause again", v.Pause, "paused"},
	}
	for _, s := range steps {
		if err := s.do(ctx); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if st, err := v.Status(ctx); err != nil || st != s.want {
			t.Fatalf("after %s: Status() = %q, %v; want %q", s.name, st, err, s.want)
		}
	}
	wantPrecondition(t, "Pause while paused", v.Pause(ctx))

	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-v.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := v.Err(); err != nil {
		t.Errorf("Err() after Stop = %v, want nil", err)
	}
	if !processGone(pid) {
		t.Errorf("qemu pid %d still exists after Stop", pid)
	}
	if got := runtimeFiles(v); len(got) != 0 {
		t.Errorf("runtime files after Stop = %v, want none", got)
	}
	if _, err := os.Stat(filepath.Join(v.cfg.StateDir, LogName)); err != nil {
		t.Errorf("qemu log removed by Stop: %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	wantPrecondition(t, "Resume after Stop", v.Resume(ctx))
	if _, err := v.Status(ctx); err == nil {
		t.Error("Status after Stop succeeded")
	}
}

// The template of a VM with a vTPM must be saved once the agent is up, not
// when the guest's monitor opens the vTPM's port early in its boot.
func TestWaitPortOpenWaitsForTheAgentsPort(t *testing.T) {
	v := newFakeVM(t, fakePorts)
	ctx := ctxT(t)
	start := time.Now()
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	if err := v.WaitPortOpen(ctx); err != nil {
		t.Fatalf("WaitPortOpen: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("WaitPortOpen returned after %v, on the vTPM's port", d)
	}
}

func TestStartFailsWhenQEMUExits(t *testing.T) {
	v := newFakeVM(t, fakeBadArgs)
	err := v.Start(ctxT(t))
	var exit *vmm.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Start: err = %v, want *vmm.ExitError", err)
	}
	if !strings.Contains(exit.Log, "could not load kernel") {
		t.Errorf("ExitError.Log = %q, want QEMU's complaint", exit.Log)
	}
	if exit.Err == nil {
		t.Error("ExitError.Err = nil, want the exit status")
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
	if !errors.As(v.Err(), &exit) {
		t.Errorf("Err() = %v, want the *vmm.ExitError", v.Err())
	}
	if err := v.Stop(ctxT(t)); err != nil {
		t.Errorf("Stop after failed Start: %v", err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	v := newFakeVM(t, fakeOK)
	v.binary = filepath.Join(t.TempDir(), "no-such-qemu")
	if err := v.Start(ctxT(t)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start: err = %v, want ErrNotExist", err)
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
}

func TestStartTimeout(t *testing.T) {
	v := newFakeVM(t, fakeNoQMP)
	v.cfg.BootTimeout = 300 * time.Millisecond
	start := time.Now()
	err := v.Start(ctxT(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Start took %v to time out, want about the boot timeout", d)
	}
	select {
	case <-v.Done():
	default:
		t.Fatal("qemu left running after Start timed out")
	}
	if got := runtimeFiles(v); len(got) != 0 {
		t.Errorf("runtime files after failed Start = %v, want none", got)
	}
}

func TestUnexpectedExit(t *testing.T) {
	v := newFakeVM(t, fakePoweroff)
	ctx := ctxT(t)
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after qemu exited")
	}
	var exit *vmm.ExitError
	if !errors.As(v.Err(), &exit) {
		t.Fatalf("Err() = %v, want *vmm.ExitError", v.Err())
	}
	if exit.Err != nil || !strings.Contains(exit.Console, "reboot: Power down") {
		t.Errorf("ExitError = %+v, want status 0 and the console tail", exit)
	}
	wantPrecondition(t, "Pause after exit", v.Pause(ctx))

	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop after exit: %v", err)
	}
	if !errors.As(v.Err(), &exit) {
		t.Errorf("Err() after Stop = %v, want it to keep reporting the exit", v.Err())
	}
	if got := runtimeFiles(v); len(got) != 0 {
		t.Errorf("runtime files after Stop = %v, want none", got)
	}
}

func TestStopKillsUnresponsiveQEMU(t *testing.T) {
	v := newFakeVM(t, fakeIgnoreQuit)
	if err := v.Start(ctxT(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := v.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v, want it to kill once ctx ended", d)
	}
	if !processGone(pid) {
		t.Errorf("qemu pid %d survived Stop", pid)
	}
	if err := v.Err(); err != nil {
		t.Errorf("Err() after Stop = %v, want nil", err)
	}
}

func TestStopBeforeStart(t *testing.T) {
	v := newFakeVM(t, fakeOK)
	if err := v.Stop(ctxT(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed by Stop of an unstarted VM")
	}
	wantPrecondition(t, "Start after Stop", v.Start(ctxT(t)))
}

func TestNewVMInvalidConfig(t *testing.T) {
	_, err := Driver{}.NewVM(vmm.Config{ID: "x", StateDir: "/run/scc/x", Kernel: "/nonexistent/vmlinux"})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("NewVM: err = %v, want ErrInvalidArgument", err)
	}
}

func TestNewVMResolvesAccel(t *testing.T) {
	v := newFakeVM(t, fakeOK)
	cfg := v.Config()
	cfg.Accel = vmm.AccelAuto
	v2, err := Driver{}.NewVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := vmm.DetectAccel()
	if v2.Accel() != want {
		t.Errorf("Accel() = %q, want the detected %q", v2.Accel(), want)
	}
}

// QEMU must not outlive the process that started it, even when that
// process is SIGKILLed and its runtime has been retiring OS threads.
func TestNoOrphanAfterShimDies(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"vmlinux", "bios.rom"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shim := exec.Command(self)
	shim.Env = append(os.Environ(), fakeShimEnv+"="+dir)
	shim.Stderr = os.Stderr
	out, err := shim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shim.Process.Kill(); shim.Wait() })

	var qemuPid int
	if _, err := fmt.Fscanln(out, &qemuPid); err != nil {
		t.Fatalf("read fake qemu pid from the shim: %v", err)
	}
	// Let the shim churn through threads for a while: QEMU must survive it.
	time.Sleep(300 * time.Millisecond)
	if !alive(qemuPid) {
		t.Fatal("qemu died while its shim was still running")
	}

	shim.Process.Kill()
	shim.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for alive(qemuPid) {
		if time.Now().After(deadline) {
			syscall.Kill(qemuPid, syscall.SIGKILL)
			t.Fatalf("qemu pid %d outlived its shim", qemuPid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie waiting for a reaper that is
// not this process counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}
