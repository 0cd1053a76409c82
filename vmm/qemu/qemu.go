// Package qemu is the vmm.Driver that runs VMs under qemu-system-x86_64,
// controlled over QMP (package qmp).
//
// QEMU runs in its own process group, so signals meant for the shim's group
// do not reach it, and with a parent-death signal of SIGKILL, so it dies
// with the process that started it: a VM never outlives its shim.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/qemu/qmp"
)

// DefaultBinary is the QEMU program Driver runs unless told otherwise.
const DefaultBinary = "qemu-system-x86_64"

const (
	// stopGrace is how long Stop lets QEMU quit on its own before killing it.
	stopGrace = 3 * time.Second
	// killWait bounds the wait for a SIGKILLed QEMU to be reaped.
	killWait = 5 * time.Second
	// dialInterval is how often Start retries the QMP socket while QEMU
	// sets up.
	dialInterval = 10 * time.Millisecond
	// logTail is how much of the QEMU and console logs an ExitError keeps.
	logTail = 2048
)

// Driver creates QEMU VMs.
type Driver struct {
	// Binary is the QEMU program, DefaultBinary (looked up in PATH) when
	// empty.
	Binary string
	// SEVHost reports the host CPU's memory encryption support for SEV-SNP
	// guests; confidential.HostSEV when nil. Tests replace it.
	SEVHost func() confidential.SEVHost
	// Detached starts QEMU in a session of its own without a parent-death
	// signal, so it outlives the process that started it: a pooled VM
	// waits for the shim that will Adopt it. Whoever adopts it stops it.
	Detached bool
}

var (
	_ vmm.Driver      = Driver{}
	_ vmm.VM          = (*VM)(nil)
	_ vmm.Snapshotter = (*VM)(nil)
)

// New implements vmm.Driver; see NewVM.
func (d Driver) New(cfg vmm.Config) (vmm.VM, error) {
	return d.NewVM(cfg)
}

// NewVM applies cfg's defaults, validates it and resolves AccelAuto to the
// accelerator this host supports. For a confidential guest it also checks
// that QEMU (by running it with --version), the accelerator and the host CPU
// can launch it, and fills in the host's SEV C-bit position; such failures
// wrap errdefs.ErrFailedPrecondition. Nothing is started or written.
func (d Driver) NewVM(cfg vmm.Config) (*VM, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new qemu vm: %w", errors.Join(errdefs.ErrInvalidArgument, err))
	}
	acc, why, err := vmm.ResolveAccel(cfg.Accel)
	if err != nil {
		return nil, fmt.Errorf("new qemu vm: %w", err)
	}
	cfg.Accel = acc
	bin := d.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	if cfg.TEE.Confidential() {
		if err := d.resolveTEE(&cfg, bin, why); err != nil {
			return nil, fmt.Errorf("new qemu vm: %w", err)
		}
	}
	return &VM{cfg: cfg, binary: bin, detached: d.Detached, done: make(chan struct{})}, nil
}

// state is where a VM is in its lifecycle.
// state is the VM's lifecycle state, shared by all drivers.
type state = vmm.State

const (
	created = vmm.StateCreated
	running = vmm.StateRunning
	paused  = vmm.StatePaused
	stopped = vmm.StateStopped
)

// VM is one QEMU process and its QMP session.
type VM struct {
	cfg      vmm.Config // defaults applied, accel resolved
	binary   string
	detached bool          // QEMU outlives this process (Driver.Detached)
	adopted  bool          // QEMU was started by another process (Adopt)
	done     chan struct{} // closed once QEMU has exited, or by Stop before Start

	// op serialises lifecycle operations (Start, Restore, Stop, Pause,
	// Resume, Save), which may each talk to QEMU for a while.
	op sync.Mutex

	mu       sync.Mutex
	state    state       // guarded by mu
	proc     *os.Process // set once QEMU started or was adopted, guarded by mu
	qmp      *qmp.Client // set once the handshake succeeded, guarded by mu
	stopping bool        // Stop or a failed Start is ending QEMU, guarded by mu
	exitErr  error       // why QEMU exited, guarded by mu; final once done is closed
	grown    grown       // what Grow added, guarded by mu

	disks map[int]string // hotplug port -> serial of the disk on it, guarded by mu
	nics  map[int]bool   // network devices AddNetDevice added, by index, guarded by mu
}

// Config returns the VM's configuration with defaults applied and the
// accelerator resolved.
func (v *VM) Config() vmm.Config { return v.cfg }

// Accel is the accelerator the VM runs with (never AccelAuto).
func (v *VM) Accel() vmm.Accel { return v.cfg.Accel }

func (v *VM) AgentAddr() string     { return v.cfg.AgentAddr() }
func (v *VM) ConsoleLog() string    { return v.cfg.ConsoleLog() }
func (v *VM) Done() <-chan struct{} { return v.done }

func (v *VM) qmpSocket() string { return filepath.Join(v.cfg.StateDir, QMPSocketName) }
func (v *VM) logPath() string   { return filepath.Join(v.cfg.StateDir, LogName) }

// exited reports whether QEMU has exited (or never will run).
func (v *VM) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

func (v *VM) currentState() state {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

func (v *VM) setState(s state) {
	v.mu.Lock()
	v.state = s
	v.mu.Unlock()
}

func (v *VM) client() *qmp.Client {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp
}

// Pid is QEMU's process id, 0 before Start.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return 0
	}
	return v.proc.Pid
}

// Err says why QEMU exited: nil while it runs or after Stop, an
// *vmm.ExitError when it exited on its own, the start error when Start
// failed.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

// Start launches QEMU and returns once the QMP handshake succeeded, within
// ctx and Config.BootTimeout. On failure QEMU is killed and its sockets
// removed; Err then reports the failure too.
func (v *VM) Start(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.launch(ctx, false); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	v.setState(running)
	return nil
}

// Stop quits QEMU over QMP, kills it if it has not exited after a short
// grace or when ctx ends, waits for it and removes the sockets and pid file.
// The logs stay in StateDir, which the caller removes.
func (v *VM) Stop(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()

	v.mu.Lock()
	st := v.state
	v.state = stopped
	v.stopping = true
	client := v.qmp
	v.mu.Unlock()

	switch st {
	case stopped:
		return nil
	case created:
		close(v.done)
		return nil
	}

	if !v.exited() {
		// QEMU may exit before it answers quit; the wait below is what
		// counts, so the reply (or its absence) does not matter.
		qctx, cancel := context.WithTimeout(ctx, stopGrace)
		_ = client.Execute(qctx, "quit", nil, nil)
		cancel()

		grace := time.NewTimer(stopGrace)
		defer grace.Stop()
		select {
		case <-v.done:
		case <-grace.C:
			log.G(ctx).WithField("vm", v.cfg.ID).Warn("qemu did not quit in time, killing it")
		case <-ctx.Done():
		}
	}
	err := v.kill()
	client.Close()
	v.removeRuntimeFiles()
	if err != nil {
		return fmt.Errorf("stop qemu: %w", err)
	}
	return nil
}

// Pause stops the guest's vCPUs.
func (v *VM) Pause(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("pause", running); err != nil {
		return err
	}
	if err := v.client().Execute(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("pause vm: %w", err)
	}
	v.setState(paused)
	return nil
}

// Resume lets a paused guest run again.
func (v *VM) Resume(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("resume", paused); err != nil {
		return err
	}
	if err := v.client().Execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resume vm: %w", err)
	}
	v.setState(running)
	return nil
}

// Status is QEMU's own view of the guest's run state, as query-status
// reports it: "running", "paused", "postmigrate", "inmigrate",
// "shutdown", "internal-error" and so on.
func (v *VM) Status(ctx context.Context) (string, error) {
	c := v.client()
	if c == nil || v.exited() {
		return "", fmt.Errorf("query vm status: %w: qemu is not running", errdefs.ErrFailedPrecondition)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		return "", fmt.Errorf("query vm status: %w", err)
	}
	return st.Status, nil
}

// expect fails unless the VM is in one of the wanted states with QEMU
// still running. The caller holds v.op.
func (v *VM) expect(action string, want ...state) error {
	st := v.currentState()
	for _, w := range want {
		if st != w {
			continue
		}
		if v.exited() {
			return fmt.Errorf("%s vm: %w: qemu has exited: %v", action, errdefs.ErrFailedPrecondition, v.Err())
		}
		return nil
	}
	return fmt.Errorf("%s vm: %w: vm is %s", action, errdefs.ErrFailedPrecondition, st)
}
