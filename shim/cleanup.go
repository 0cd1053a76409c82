package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/snapshot/pool"
	"github.com/sccontainers/scc/vmm/qemu"
)

// watchVM reports every process of the sandbox as exited (killed) when the
// VM dies under them, and keeps its console log for diagnosis.
func (s *service) watchVM(sb *sandbox) {
	<-sb.vm.Done()
	s.mu.Lock()
	current := s.sandbox == sb
	var cs []*container
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	if !current {
		return // stopped on purpose
	}
	ctx := log.WithLogger(s.ctx, log.G(s.ctx).WithField(logSandbox, sb.id))
	err := sb.vm.Err()
	if err == nil {
		err = errors.New("VM exited")
	}
	log.G(ctx).WithError(err).Error("sandbox VM exited while containers ran")
	sb.keepConsoleLog(ctx)
	now := time.Now()
	for _, c := range cs {
		for _, p := range c.processes() {
			if st := p.status(); st == statusRunning || st == statusPaused {
				s.recordExit(c, p, exitCodeVMGone, now)
			}
		}
	}
}

// unshareLeftover detaches whatever is still mounted at or below dir.
func unshareLeftover(dir string) error {
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// cleanupSandboxDir kills the VM whose state is in dir, if it still runs,
// and removes its mounts and files. It serves `delete` after a shim died.
func cleanupSandboxDir(ctx context.Context, dir, id string) error {
	if dir == "" {
		return nil
	}
	if pid := vmPid(dir); pid > 0 {
		log.G(ctx).WithField("pid", pid).Warn("killing VM left by a dead shim")
		killAndWait(pid, 2*time.Second)
	}
	// A reused VM's vTPM is detached from the shim too.
	killVMProcesses(dir)
	return removeStateDir(dir)
}

// shimPidFile, in a sandbox state directory, holds the pid of the shim
// that owns the sandbox.
const shimPidFile = "shim.pid"

// writeShimPid records the calling shim as the owner of the sandbox in dir.
func writeShimPid(dir string) error {
	return os.WriteFile(filepath.Join(dir, shimPidFile), []byte(strconv.Itoa(os.Getpid())), 0o600)
}

// shimAlive reports whether the shim that owns the sandbox in dir still
// runs: a process with the recorded pid runs the same program as the
// caller.
func shimAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, shimPidFile))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	return err == nil && exe == self
}

// vmPid returns the pid of the QEMU process of the VM in dir, checking
// that the process is still that QEMU before anything signals it.
func vmPid(dir string) int {
	// A VM that came from the pool runs under its pool id, and its command
	// line names the pool directory it started in.
	if id := pool.ReadID(dir); id != "" {
		return qemu.ProcessOf(dir, id)
	}
	b, err := os.ReadFile(filepath.Join(dir, qemu.PidFileName))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return 0
	}
	return pid
}

// killAndWait sends SIGKILL to pid and waits up to wait for it to go.
func killAndWait(pid int, wait time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(wait); processAlive(pid) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
