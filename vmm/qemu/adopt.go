package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/internal/sched"
	"github.com/sccontainers/scc/vmm"
)

// Release lets go of a VM started by a Detached driver: it closes the QMP
// session and leaves QEMU running in whatever state it is, for Adopt to
// take over, possibly in another process. The VM value is stopped and of
// no further use; it never kills QEMU.
func (v *VM) Release() error {
	v.op.Lock()
	defer v.op.Unlock()
	if !v.detached {
		return fmt.Errorf("release vm: %w: QEMU was not started detached", errdefs.ErrFailedPrecondition)
	}
	if err := v.expect("release", running, paused); err != nil {
		return err
	}
	v.mu.Lock()
	v.state, v.stopping = stopped, true
	c := v.qmp
	v.qmp = nil
	v.mu.Unlock()
	return c.Close()
}

// Adopt takes over a QEMU that a Detached driver started and released.
// cfg is the configuration it was started with, except StateDir, which
// names where its directory is now: a directory may be renamed while QEMU
// runs, its sockets and open files move with it. Adopt reads the pid file,
// checks that the process is that VM's QEMU, watches it through a pidfd
// (it is not this process's child) and connects to QMP. The VM is in the
// state QEMU reports, paused or running; Stop ends it as any other VM.
func (d Driver) Adopt(ctx context.Context, cfg vmm.Config) (*VM, error) {
	v, err := d.NewVM(cfg)
	if err != nil {
		return nil, err
	}
	v.detached, v.adopted = true, true
	pid, err := readPidFile(filepath.Join(v.cfg.StateDir, PidFileName))
	if err != nil {
		return nil, fmt.Errorf("adopt vm: %w", err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt vm: qemu pid %d: %w", pid, err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	// Checked after the pidfd exists: from here the pid cannot be reused
	// under us.
	if !isQEMUOf(pid, v.cfg.ID) {
		pidfd.Close()
		return nil, fmt.Errorf("adopt vm: pid %d is not the QEMU of vm %s: %w", pid, v.cfg.ID, errdefs.ErrNotFound)
	}
	// Pooled VMs are made at low priority, in the background; a VM that
	// serves a sandbox runs at normal priority.
	if err := sched.SetNice(pid, 0); err != nil {
		pidfd.Close()
		return nil, fmt.Errorf("adopt vm: %w", err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		pidfd.Close()
		return nil, fmt.Errorf("adopt vm: %w", err)
	}
	v.mu.Lock()
	v.proc = proc
	v.state = running
	v.mu.Unlock()
	go v.watchPidfd(pidfd)

	c, err := v.dialQMP(ctx)
	if err != nil {
		v.abandon(err)
		return nil, fmt.Errorf("adopt vm: %w", err)
	}
	v.mu.Lock()
	v.qmp = c
	v.mu.Unlock()
	status, err := v.Status(ctx)
	if err != nil {
		v.abandon(err)
		return nil, fmt.Errorf("adopt vm: %w", err)
	}
	switch status {
	case "running":
	case "paused":
		v.setState(paused)
	default:
		err := fmt.Errorf("adopt vm: %w: qemu reports %q", errdefs.ErrFailedPrecondition, status)
		v.abandon(err)
		return nil, err
	}
	return v, nil
}

// abandon kills an adopted QEMU that cannot be used.
func (v *VM) abandon(why error) {
	v.mu.Lock()
	v.stopping = true
	c := v.qmp
	v.qmp = nil
	v.mu.Unlock()
	v.kill()
	if c != nil {
		c.Close()
	}
	v.removeRuntimeFiles()
	v.mu.Lock()
	v.state = stopped
	if v.exitErr == nil {
		v.exitErr = why
	}
	v.mu.Unlock()
}

// watchPidfd closes done once the adopted QEMU has exited.
func (v *VM) watchPidfd(pidfd *os.File) {
	defer pidfd.Close()
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	v.mu.Lock()
	if !v.stopping {
		v.exitErr = &vmm.ExitError{
			Log:     vmm.Tail(v.logPath(), logTail),
			Console: vmm.Tail(v.ConsoleLog(), logTail),
		}
	}
	v.mu.Unlock()
	close(v.done)
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad pid %q", path, b)
	}
	return pid, nil
}

// isQEMUOf reports whether process pid runs with the -name Args gives the
// VM with this id.
func isQEMUOf(pid int, id string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte("\x00-name\x00scc-"+id+"\x00"))
}

// ProcessOf returns the pid of the running QEMU of the VM whose state
// directory is dir and whose id is id, or 0: the pid file is checked
// against the process's command line, so a recycled pid is never taken
// for the VM.
func ProcessOf(dir, id string) int {
	pid, err := readPidFile(filepath.Join(dir, PidFileName))
	if err != nil || !isQEMUOf(pid, id) {
		return 0
	}
	return pid
}
