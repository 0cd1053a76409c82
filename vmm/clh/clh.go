// Package clh is the vmm.Driver that runs VMs under cloud-hypervisor,
// controlled over its REST API on a unix socket
// (vmm/src/api/openapi/cloud-hypervisor.yaml upstream, a copy in testdata).
//
// Start runs `cloud-hypervisor --api-socket path=<StateDir>/clh.sock`, in
// its own process group and with a parent-death signal of SIGKILL like the
// QEMU driver, then PUT /vm.create (VMConfigFor) and PUT /vm.boot. Stop
// asks PUT /vmm.shutdown and kills the process if it lingers.
//
// What differs from QEMU, and what a caller must do about it:
//
//   - The agent's channel is the virtio-console: the guest agent opens
//     /dev/hvc0 (no /sys/class/virtio-ports name), the host dials AgentAddr.
//   - Shares are virtio-fs, not 9p: the driver starts one virtiofsd per
//     share (Driver.Virtiofsd) and the guest mounts each with
//     `mount -t virtiofs <tag> <dir>`.
//   - Save and Restore take a directory (cloud-hypervisor writes
//     config.json, state.json and the memory ranges into it), and the
//     restored VM reuses the saved VM's socket and log paths, so it must be
//     restored with the same StateDir.
//   - SEV-SNP guests start from an IGVM file (TEE.SNP.IGVM); TDX guests
//     from TDVF, with no MRCONFIGID (the API has no field for it).
package clh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/sccontainers/scc/vmm"
)

// Default programs, looked up in PATH.
const (
	DefaultBinary    = "cloud-hypervisor"
	DefaultVirtiofsd = "virtiofsd"
)

const (
	stopGrace    = 3 * time.Second
	killWait     = 5 * time.Second
	dialInterval = 10 * time.Millisecond
	logTail      = 2048
	// exitGrace is how long a failed Start waits for a VMM that may be
	// exiting, to report its exit rather than a broken connection.
	exitGrace = 200 * time.Millisecond
)

// Driver creates cloud-hypervisor VMs.
type Driver struct {
	Binary    string // DefaultBinary when empty
	Virtiofsd string // DefaultVirtiofsd when empty; run only for VMs with shares
}

var (
	_ vmm.Driver      = Driver{}
	_ vmm.VM          = (*VM)(nil)
	_ vmm.Snapshotter = (*VM)(nil)
)

// New implements vmm.Driver; see NewVM.
func (d Driver) New(cfg vmm.Config) (vmm.VM, error) { return d.NewVM(cfg) }

// NewVM applies cfg's defaults, validates it, resolves AccelAuto (which
// must give KVM) and builds the vm.create body. Nothing is started or
// written.
func (d Driver) NewVM(cfg vmm.Config) (*VM, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new cloud-hypervisor vm: %w", errors.Join(errdefs.ErrInvalidArgument, err))
	}
	acc, why, err := vmm.ResolveAccel(cfg.Accel)
	if err != nil {
		return nil, fmt.Errorf("new cloud-hypervisor vm: %w", err)
	}
	if acc != vmm.AccelKVM {
		return nil, fmt.Errorf("new cloud-hypervisor vm: %w: cloud-hypervisor needs KVM, but the accelerator is %s (%s)", errdefs.ErrFailedPrecondition, acc, why)
	}
	cfg.Accel = acc
	vc, err := VMConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("new cloud-hypervisor vm: %w", errors.Join(errdefs.ErrInvalidArgument, err))
	}
	v := &VM{cfg: cfg, vmConfig: vc, binary: d.Binary, virtiofsd: d.Virtiofsd, done: make(chan struct{})}
	if v.binary == "" {
		v.binary = DefaultBinary
	}
	if v.virtiofsd == "" {
		v.virtiofsd = DefaultVirtiofsd
	}
	return v, nil
}

// state is the VM's lifecycle state, shared by all drivers.
type state = vmm.State

const (
	created = vmm.StateCreated
	running = vmm.StateRunning
	paused  = vmm.StatePaused
	stopped = vmm.StateStopped
)

// VM is one cloud-hypervisor process, the virtiofsd processes serving its
// shares, and its API client.
type VM struct {
	cfg       vmm.Config
	vmConfig  VMConfig
	binary    string
	virtiofsd string
	done      chan struct{} // closed once cloud-hypervisor has exited, or by Stop before Start

	// op serialises lifecycle operations.
	op sync.Mutex

	mu       sync.Mutex
	state    state       // guarded by mu
	cmd      *exec.Cmd   // cloud-hypervisor, guarded by mu
	fsd      []*exec.Cmd // virtiofsd per share, guarded by mu
	api      *client     // guarded by mu
	stopping bool        // Stop or a failed Start is ending the VMM, guarded by mu
	exitErr  error       // guarded by mu; final once done is closed
}

// Config returns the VM's configuration with defaults applied.
func (v *VM) Config() vmm.Config { return v.cfg }

// VMConfig returns the body Start sends to PUT /vm.create.
func (v *VM) VMConfig() VMConfig { return v.vmConfig }

func (v *VM) AgentAddr() string     { return v.cfg.AgentAddr() }
func (v *VM) ConsoleLog() string    { return v.cfg.ConsoleLog() }
func (v *VM) Done() <-chan struct{} { return v.done }

func (v *VM) apiSocket() string { return filepath.Join(v.cfg.StateDir, APISocketName) }
func (v *VM) logPath() string   { return filepath.Join(v.cfg.StateDir, LogName) }

// Pid is cloud-hypervisor's process id, 0 before Start.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil || v.cmd.Process == nil {
		return 0
	}
	return v.cmd.Process.Pid
}

// Err says why cloud-hypervisor exited: nil while it runs or after Stop,
// an *vmm.ExitError when it exited on its own, the start error when Start
// failed.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

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

func (v *VM) client() *client {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.api
}

// Start launches cloud-hypervisor (and virtiofsd for each share), creates
// the VM and boots it, within ctx and Config.BootTimeout. On failure every
// process is killed and Err reports why.
func (v *VM) Start(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	err := v.launch(ctx, func(ctx context.Context, c *client) error {
		if err := c.put(ctx, "vm.create", v.vmConfig); err != nil {
			return err
		}
		return c.put(ctx, "vm.boot", nil)
	})
	if err != nil {
		return fmt.Errorf("start cloud-hypervisor: %w", err)
	}
	v.setState(running)
	return nil
}

// Stop asks cloud-hypervisor to quit (PUT /vmm.shutdown), kills it if it
// has not exited after a short grace or when ctx ends, stops the
// virtiofsd processes and removes the sockets. Logs stay.
func (v *VM) Stop(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()

	v.mu.Lock()
	st := v.state
	v.state = stopped
	v.stopping = true
	c := v.api
	v.mu.Unlock()

	switch st {
	case stopped:
		return nil
	case created:
		close(v.done)
		return nil
	}
	if !v.exited() && c != nil {
		qctx, cancel := context.WithTimeout(ctx, stopGrace)
		// The VMM may exit before it answers; the wait below is what
		// counts.
		_ = c.put(qctx, "vmm.shutdown", nil)
		cancel()
		grace := time.NewTimer(stopGrace)
		defer grace.Stop()
		select {
		case <-v.done:
		case <-grace.C:
			log.G(ctx).WithField("vm", v.cfg.ID).Warn("cloud-hypervisor did not quit in time, killing it")
		case <-ctx.Done():
		}
	}
	err := v.killAll()
	if c != nil {
		c.close()
	}
	v.removeRuntimeFiles()
	if err != nil {
		return fmt.Errorf("stop cloud-hypervisor: %w", err)
	}
	return nil
}

// Pause freezes the guest's vCPUs (PUT /vm.pause).
func (v *VM) Pause(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("pause", running); err != nil {
		return err
	}
	if err := v.client().put(ctx, "vm.pause", nil); err != nil {
		return fmt.Errorf("pause vm: %w", err)
	}
	v.setState(paused)
	return nil
}

// Resume lets a paused guest run again (PUT /vm.resume).
func (v *VM) Resume(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("resume", paused); err != nil {
		return err
	}
	if err := v.client().put(ctx, "vm.resume", nil); err != nil {
		return fmt.Errorf("resume vm: %w", err)
	}
	v.setState(running)
	return nil
}

// Info returns cloud-hypervisor's view of the VM (GET /vm.info).
func (v *VM) Info(ctx context.Context) (VMInfo, error) {
	var info VMInfo
	c := v.client()
	if c == nil || v.exited() {
		return info, fmt.Errorf("vm info: %w: cloud-hypervisor is not running", errdefs.ErrFailedPrecondition)
	}
	if err := c.get(ctx, "vm.info", &info); err != nil {
		return info, fmt.Errorf("vm info: %w", err)
	}
	return info, nil
}

// Ping returns the VMM's version (GET /vmm.ping).
func (v *VM) Ping(ctx context.Context) (PingResponse, error) {
	var p PingResponse
	c := v.client()
	if c == nil || v.exited() {
		return p, fmt.Errorf("ping vmm: %w: cloud-hypervisor is not running", errdefs.ErrFailedPrecondition)
	}
	if err := c.get(ctx, "vmm.ping", &p); err != nil {
		return p, fmt.Errorf("ping vmm: %w", err)
	}
	return p, nil
}

// expect fails unless the VM is in one of the wanted states with the VMM
// still running. The caller holds v.op.
func (v *VM) expect(action string, want ...state) error {
	st := v.currentState()
	for _, w := range want {
		if st != w {
			continue
		}
		if v.exited() {
			return fmt.Errorf("%s vm: %w: cloud-hypervisor has exited: %v", action, errdefs.ErrFailedPrecondition, v.Err())
		}
		return nil
	}
	return fmt.Errorf("%s vm: %w: vm is %s", action, errdefs.ErrFailedPrecondition, st)
}

// removeRuntimeFiles deletes the sockets, which the VMM and virtiofsd
// leave behind whether they quit or are killed.
func (v *VM) removeRuntimeFiles() {
	names := []string{APISocketName, vmm.AgentSocketName}
	for i := range v.cfg.Shares {
		names = append(names, fsSocketName(i))
	}
	for _, n := range names {
		os.Remove(filepath.Join(v.cfg.StateDir, n))
	}
}
