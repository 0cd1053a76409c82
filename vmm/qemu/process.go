package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu/qmp"
)

// launch starts QEMU and completes the QMP handshake, within ctx and
// BootTimeout. With restore set QEMU waits for incoming state instead of
// booting. On failure nothing is left running, the VM is stopped and Err
// reports the failure. The caller holds v.op.
func (v *VM) launch(ctx context.Context, restore bool) error {
	if st := v.currentState(); st != created {
		return fmt.Errorf("%w: vm is %s", errdefs.ErrFailedPrecondition, st)
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.BootTimeout)
	defer cancel()

	build := Args
	if restore {
		build = restoreArgs
	}
	argv, err := build(v.cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(v.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	// A socket left by an earlier QEMU would let the QMP wait below connect
	// to nothing and fail slowly.
	v.removeRuntimeFiles()

	logf, err := os.OpenFile(v.logPath(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("open qemu log: %w", err)
	}
	cmd := exec.Command(v.binary, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if v.detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	for _, n := range v.cfg.Net {
		cmd.ExtraFiles = append(cmd.ExtraFiles, n.Tap)
	}

	started := make(chan error, 1)
	go v.run(cmd, started)
	err = <-started
	logf.Close() // QEMU holds its own copy
	if err != nil {
		v.mu.Lock()
		v.state, v.exitErr = stopped, err
		v.mu.Unlock()
		close(v.done)
		return err
	}
	v.mu.Lock()
	v.proc = cmd.Process
	v.mu.Unlock()

	c, err := v.dialQMP(ctx)
	if err != nil {
		v.mu.Lock()
		v.stopping = true
		v.mu.Unlock()
		if kerr := v.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		v.removeRuntimeFiles()
		v.mu.Lock()
		v.state = stopped
		if v.exitErr == nil {
			v.exitErr = err
		}
		v.mu.Unlock()
		return err
	}
	v.mu.Lock()
	v.qmp = c
	v.mu.Unlock()
	return nil
}

// run starts cmd, reports the result on started and waits for QEMU to exit.
func (v *VM) run(cmd *exec.Cmd, started chan<- error) {
	// Pdeathsig fires when the thread that forked QEMU exits, not when the
	// process does. Go retires a thread when a goroutine exits while locked
	// to it, which other code in the process may do; holding this goroutine
	// on its thread for QEMU's whole life keeps that thread, and so QEMU,
	// alive until QEMU exits.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	werr := cmd.Wait()

	v.mu.Lock()
	if !v.stopping {
		v.exitErr = &vmm.ExitError{
			Err:     werr,
			Log:     vmm.Tail(v.logPath(), logTail),
			Console: vmm.Tail(v.ConsoleLog(), logTail),
		}
	}
	v.mu.Unlock()
	close(v.done)
}

// dialQMP connects to QEMU's QMP socket once QEMU has created it.
func (v *VM) dialQMP(ctx context.Context) (*qmp.Client, error) {
	for {
		c, err := qmp.Dial(ctx, v.qmpSocket())
		if err == nil {
			return c, nil
		}
		select {
		case <-v.done:
			return nil, v.Err()
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for qmp: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(dialInterval):
		}
	}
}

// kill sends SIGKILL to QEMU unless it has exited, and waits for it to be
// reaped.
func (v *VM) kill() error {
	if v.exited() {
		return nil
	}
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	// os.Process signals through a pidfd, so a recycled pid is never hit.
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill qemu: %w", err)
	}
	select {
	case <-v.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill qemu: pid %d still running %v after SIGKILL", p.Pid, killWait)
	}
}

// removeRuntimeFiles deletes the sockets and pid file, which QEMU leaves
// behind whether it quits or is killed. Logs stay.
func (v *VM) removeRuntimeFiles() {
	for _, name := range []string{QMPSocketName, vmm.AgentSocketName, PidFileName} {
		os.Remove(filepath.Join(v.cfg.StateDir, name))
	}
}
