package clh

import (
	"bytes"
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
)

// launch starts the virtiofsd processes and cloud-hypervisor, waits for
// the API to answer and runs setup (vm.create and vm.boot, or vm.restore),
// all within ctx and BootTimeout. On failure nothing is left running, the
// VM is stopped and Err reports why. The caller holds v.op.
func (v *VM) launch(ctx context.Context, setup func(context.Context, *client) error) error {
	if st := v.currentState(); st != created {
		return fmt.Errorf("%w: vm is %s", errdefs.ErrFailedPrecondition, st)
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.BootTimeout)
	defer cancel()

	if err := os.MkdirAll(v.cfg.StateDir, 0o700); err != nil {
		return v.failed(fmt.Errorf("create state dir: %w", err))
	}
	v.removeRuntimeFiles()
	logf, err := os.OpenFile(v.logPath(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return v.failed(fmt.Errorf("open log: %w", err))
	}
	defer logf.Close() // the children hold their own copies

	for i, s := range v.cfg.Shares {
		sock := filepath.Join(v.cfg.StateDir, fsSocketName(i))
		cmd := exec.Command(v.virtiofsd,
			"--socket-path="+sock,
			"--shared-dir="+s.Path,
			// The guest owns the share's contents while it runs; the
			// host must not serve stale pages from its cache.
			"--cache=never",
			// The shim already confines the share to the sandbox's
			// directory; namespaces would need privileges it may lack.
			"--sandbox=none",
		)
		if err := startChild(cmd, logf); err != nil {
			return v.failed(fmt.Errorf("start virtiofsd for share %q: %w", s.Tag, err))
		}
		v.mu.Lock()
		v.fsd = append(v.fsd, cmd)
		v.mu.Unlock()
		if err := waitSocket(ctx, sock, cmd); err != nil {
			return v.failed(fmt.Errorf("virtiofsd for share %q: %w", s.Tag, err))
		}
	}

	cmd := exec.Command(v.binary, "--api-socket", "path="+v.apiSocket())
	started := make(chan error, 1)
	go v.run(cmd, logf, started)
	if err := <-started; err != nil {
		v.mu.Lock()
		v.stopping = true
		v.mu.Unlock()
		close(v.done)
		return v.failed(err)
	}
	v.mu.Lock()
	v.cmd = cmd
	v.mu.Unlock()

	c := newClient(v.apiSocket())
	if err := v.waitAPI(ctx, c); err != nil {
		return v.failed(err)
	}
	v.mu.Lock()
	v.api = c
	v.mu.Unlock()
	if err := setup(ctx, c); err != nil {
		return v.failed(err)
	}
	return nil
}

// failed ends whatever launch started and records err. The VMM's own
// exit, when it came first, is the better explanation.
func (v *VM) failed(err error) error {
	v.mu.Lock()
	started := v.cmd != nil
	v.mu.Unlock()
	if started {
		// A VMM that dropped the API connection is usually exiting, and
		// its status and log say why better than the broken connection.
		select {
		case <-v.done:
		case <-time.After(exitGrace):
		}
	}
	v.mu.Lock()
	v.stopping = true
	exitErr := v.exitErr
	v.mu.Unlock()
	if exitErr != nil {
		err = fmt.Errorf("%w; %w", err, exitErr)
	}
	if kerr := v.killAll(); kerr != nil {
		err = errors.Join(err, kerr)
	}
	v.removeRuntimeFiles()
	v.mu.Lock()
	v.state = stopped
	v.exitErr = err
	v.mu.Unlock()
	v.mu.Lock()
	neverStarted := v.cmd == nil
	v.mu.Unlock()
	if neverStarted && !v.exited() {
		close(v.done)
	}
	return err
}

// startChild starts cmd in its own process group, killed when this process
// dies, with its output in logf.
func startChild(cmd *exec.Cmd, logf *os.File) error {
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the forking thread exits; see run for why the
	// VMM's thread is held. virtiofsd lives as long as the VMM it serves,
	// and a lost virtiofsd only fails the guest's file accesses, so it is
	// started from the caller's thread.
	return cmd.Start()
}

// run starts cloud-hypervisor, reports the result on started and waits
// for it to exit.
func (v *VM) run(cmd *exec.Cmd, logf *os.File, started chan<- error) {
	// Pdeathsig fires when the thread that forked the VMM exits, not when
	// the process does: hold this goroutine on its thread for the VMM's
	// whole life so that the runtime never retires that thread under it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if err := startChild(cmd, logf); err != nil {
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

// waitAPI pings the API socket until cloud-hypervisor answers.
func (v *VM) waitAPI(ctx context.Context, c *client) error {
	for {
		var p PingResponse
		err := c.get(ctx, "vmm.ping", &p)
		if err == nil {
			return nil
		}
		select {
		case <-v.done:
			return fmt.Errorf("cloud-hypervisor exited before its API answered")
		case <-ctx.Done():
			return fmt.Errorf("wait for cloud-hypervisor api: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(dialInterval):
		}
	}
}

// waitSocket waits for a daemon to create its listening socket.
func waitSocket(ctx context.Context, path string, cmd *exec.Cmd) error {
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if cmd.ProcessState != nil || !processAlive(cmd.Process.Pid) {
			return fmt.Errorf("exited before creating %s", path)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-time.After(dialInterval):
		}
	}
}

// processAlive reports whether pid runs, a zombie counting as dead.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// killAll SIGKILLs cloud-hypervisor and the virtiofsd processes that are
// still running and reaps them.
func (v *VM) killAll() error {
	v.mu.Lock()
	cmd, fsd := v.cmd, v.fsd
	v.fsd = nil
	v.mu.Unlock()

	var errs []error
	if cmd != nil && !v.exited() {
		p := cmd.Process
		// os.Process signals through a pidfd, so a recycled pid is never hit.
		if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("kill cloud-hypervisor: %w", err))
		}
		select {
		case <-v.done:
		case <-time.After(killWait):
			errs = append(errs, fmt.Errorf("kill cloud-hypervisor: pid %d still running %v after SIGKILL", p.Pid, killWait))
		}
	}
	for _, c := range fsd {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	return errors.Join(errs...)
}
