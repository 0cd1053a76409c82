// Package swtpm runs a software TPM 2.0 (the swtpm emulator) for one VM.
//
// StartSwtpm starts `swtpm socket --tpm2` with its state in a directory
// and a control socket there. QEMU attaches the emulator to a guest with
//
//	-chardev socket,id=chrtpm,path=<CtrlPath>
//	-tpmdev emulator,id=tpm0,chardev=chrtpm
//	-device tpm-crb,tpmdev=tpm0
//
// (QEMUArgs returns exactly these arguments). QEMU speaks swtpm's control
// protocol on that socket and hands swtpm the TPM command channel itself,
// so in that mode nothing else may talk to the TPM. Tests and host-side
// tools that want to send TPM commands directly start the emulator
// WithCommandSocket and use OpenTPM instead of QEMU.
package swtpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	ctrlSocketName = "swtpm-ctrl.sock"
	// CmdSocketName is the TPM command socket's name in the emulator's
	// directory (WithCommandSocket).
	CmdSocketName = "swtpm-cmd.sock"
	logFileName   = "swtpm.log"
	// PidFileName, in the directory of an emulator started Detached,
	// holds its pid.
	PidFileName = "swtpm.pid"

	// maxSocketPath is sun_path's size on Linux less the terminating NUL.
	maxSocketPath = 107

	// cmdGetCapability is swtpm's control-channel command that reports
	// the emulator's capabilities; it is answered in any TPM state, so it
	// serves as a liveness probe.
	cmdGetCapability = 1

	stopGrace = 5 * time.Second
)

// Binary is the emulator's executable, looked up in PATH.
const Binary = "swtpm"

// ErrNotFound is returned when the swtpm binary is not installed.
var ErrNotFound = errors.New("swtpm binary not found")

// Swtpm is a running emulator. Stop must be called to end it; the process
// also receives SIGKILL when the OS thread that started it exits
// (Pdeathsig), so a crashed shim does not leave emulators behind. Go
// retires a thread only when a goroutine exits while locked to it
// (runtime.LockOSThread), so do not call StartSwtpm from such a goroutine.
type Swtpm struct {
	// CtrlPath is the control socket, for QEMU's -chardev.
	CtrlPath string
	// CmdPath is the TPM command socket, empty unless started
	// WithCommandSocket.
	CmdPath string
	// Dir holds the TPM state (kept after Stop) and swtpm.log.
	Dir string

	cmd      *exec.Cmd
	exited   chan struct{} // closed once the process has been reaped
	waitErr  error         // valid after exited is closed
	stopOnce sync.Once
	stopErr  error
}

type config struct {
	cmdSocket bool
	detached  bool
}

// Option changes how StartSwtpm runs the emulator.
type Option func(*config)

// WithCommandSocket also opens a TPM command socket (CmdPath) and starts
// the TPM (TPM2_Startup(CLEAR)) at once, for use without QEMU: OpenTPM
// then talks to it. Do not hand such an emulator to QEMU.
func WithCommandSocket() Option {
	return func(c *config) { c.cmdSocket = true }
}

// Detached starts the emulator in a session of its own without a
// parent-death signal, so that it outlives the process that started it,
// and in dir, which it names only relatively: dir may be renamed while
// it runs (a pooled VM's directory moves to the sandbox that takes it),
// its state, log and sockets move with it. It writes its pid to
// PidFileName there; ProcessOf finds it. Whoever owns it last must stop
// it.
func Detached() Option {
	return func(c *config) { c.detached = true }
}

// StartSwtpm starts an emulator whose state lives in dir (created if
// missing; an existing state is reused) and waits until its sockets
// answer. ctx bounds only the start: the emulator lives until Stop.
func StartSwtpm(ctx context.Context, dir string, opts ...Option) (*Swtpm, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: %w: %w", ErrNotFound, err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	s := &Swtpm{
		Dir:      dir,
		CtrlPath: filepath.Join(dir, ctrlSocketName),
		exited:   make(chan struct{}),
	}
	if cfg.cmdSocket {
		s.CmdPath = filepath.Join(dir, CmdSocketName)
	}
	for _, p := range []string{s.CtrlPath, s.CmdPath} {
		if len(p) > maxSocketPath {
			return nil, fmt.Errorf("start swtpm: socket path %q is longer than %d bytes", p, maxSocketPath)
		}
		if p != "" {
			// A stale socket from a killed emulator would make bind fail.
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("start swtpm: %w", err)
			}
		}
	}

	// A detached emulator runs in dir and names its files relatively,
	// so that they follow dir when it is renamed.
	in := func(name string) string { return filepath.Join(dir, name) }
	if cfg.detached {
		in = func(name string) string { return name }
	}
	args := []string{
		"socket", "--tpm2",
		"--tpmstate", "dir=" + in("."),
		"--ctrl", "type=unixio,path=" + in(ctrlSocketName),
		"--log", "file=" + in(logFileName),
	}
	if cfg.cmdSocket {
		args = append(args,
			"--server", "type=unixio,path="+in(CmdSocketName),
			"--flags", "not-need-init,startup-clear")
	}
	if cfg.detached {
		args = append(args, "--pid", "file="+PidFileName)
	}
	// Not CommandContext: ctx bounds the start, not the emulator's life.
	s.cmd = exec.Command(bin, args...)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cfg.detached {
		s.cmd.Dir = dir
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w (stderr: %s)", err, msg)
		}
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	return s, nil
}

// Pid is the emulator's process id.
func (s *Swtpm) Pid() int { return s.cmd.Process.Pid }

// QEMUArgs returns the QEMU arguments that attach this emulator to a
// guest as a CRB TPM (the device Linux guests probe without ACPI quirks).
// id names the chardev/tpmdev pair and must be unique within the VM.
func (s *Swtpm) QEMUArgs(id string) []string {
	chr := "chr" + id
	// QEMU option values escape a comma by doubling it.
	path := strings.ReplaceAll(s.CtrlPath, ",", ",,")
	return []string{
		"-chardev", "socket,id=" + chr + ",path=" + path,
		"-tpmdev", "emulator,id=" + id + ",chardev=" + chr,
		"-device", "tpm-crb,tpmdev=" + id,
	}
}

func (s *Swtpm) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("swtpm exited during start: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("wait for swtpm sockets: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// probe asks the control channel for the emulator's capabilities and, if
// there is one, checks that the command socket accepts connections.
func (s *Swtpm) probe(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.CtrlPath)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := binary.Write(c, binary.BigEndian, uint32(cmdGetCapability)); err != nil {
		return err
	}
	// The reply is the capability bit set (uint64); an emulator that
	// answers at all with a non-empty set is up.
	var caps [8]byte
	if _, err := io.ReadFull(c, caps[:]); err != nil {
		return fmt.Errorf("read capability reply: %w", err)
	}
	if binary.BigEndian.Uint64(caps[:]) == 0 {
		return errors.New("swtpm reports no capabilities")
	}
	if s.CmdPath == "" {
		return nil
	}
	cc, err := d.DialContext(ctx, "unix", s.CmdPath)
	if err != nil {
		return err
	}
	return cc.Close()
}

// Stop ends the emulator (SIGTERM, then SIGKILL after a grace period),
// reaps it and removes its sockets. The TPM state in Dir is kept. Stop is
// idempotent.
func (s *Swtpm) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Swtpm) stop() error {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopGrace):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	var errs []error
	for _, p := range []string{s.CtrlPath, s.CmdPath} {
		if p == "" {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop swtpm: %w", err)
	}
	return nil
}

// ProcessOf returns the pid of the running emulator started Detached in
// dir, wherever dir was when it started, or 0: the pid file is checked
// against the process's working directory and program, so a recycled pid
// is never taken for it.
func ProcessOf(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, PidFileName))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
	if err != nil {
		return 0
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	exe, err := os.Readlink(filepath.Join(proc, "exe"))
	if err != nil || cwd != abs || filepath.Base(exe) != Binary {
		return 0
	}
	return pid
}
