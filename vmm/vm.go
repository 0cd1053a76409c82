package vmm

import (
	"context"
	"fmt"
	"strings"
)

// Driver creates VMs for one hypervisor.
type Driver interface {
	// New checks cfg (after applying defaults) and returns a VM in the
	// created state; nothing runs until Start.
	New(cfg Config) (VM, error)
}

// VM is one virtual machine and the VMM process that runs it.
type VM interface {
	// Start launches the VMM and returns once its process runs and its
	// control socket answers. The guest may still be booting. On error
	// nothing is left running.
	Start(ctx context.Context) error
	// Stop asks the VMM to quit, kills it after a short grace, waits for it
	// to exit and removes its sockets. It is idempotent and valid in any
	// state.
	Stop(ctx context.Context) error
	// Pause freezes the guest's vCPUs; Resume lets them run again.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error

	// AgentAddr is the host unix socket of the guest agent's channel.
	AgentAddr() string
	// Done is closed once the VMM process has exited (or Stop ran on a VM
	// that never started).
	Done() <-chan struct{}
	// Err says why the VMM exited: nil after Stop, an *ExitError when it
	// exited on its own. It is nil while the VMM runs.
	Err() error
	// ConsoleLog is the path of the guest serial console log.
	ConsoleLog() string
	// Pid is the VMM process id, 0 before Start.
	Pid() int
}

// Snapshotter is implemented by VMs whose state can be saved to a file and
// later restored into a fresh VM built from the same Config.
type Snapshotter interface {
	// Save pauses a running or paused VM and writes its full state (device
	// state and guest memory) to path. The VM stays paused; Resume it or
	// Stop it.
	Save(ctx context.Context, path string) error
	// Restore is called instead of Start on a VM in the created state: it
	// launches the VMM, loads the state Save wrote to path and leaves the
	// VM paused, so the caller can reconnect before Resume.
	Restore(ctx context.Context, path string) error
}

// Resizer is implemented by VMs that can grow while they run, up to
// Config.MaxVCPUs and Config.MaxMemoryMiB. Nothing shrinks: the guest must
// bring what was added online (the agent does).
type Resizer interface {
	// Grow adds vCPUs and memory until the VM has at least vcpus and
	// memoryMiB; memory is added in blocks the guest can take, so it may
	// exceed memoryMiB. It fails beyond the maxima.
	Grow(ctx context.Context, vcpus, memoryMiB int) error
	// Size is what the VM has now.
	Size() (vcpus, memoryMiB int)
}

// ExitError reports a VMM process that exited without Stop asking it to.
type ExitError struct {
	// Err is the process wait error; nil when the VMM exited with status 0,
	// which a no-reboot VMM does on guest poweroff, reboot or panic.
	Err error
	// Log is the tail of the VMM's own log (its stderr).
	Log string
	// Console is the tail of the guest serial console.
	Console string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Err != nil {
		fmt.Fprintf(&b, "vmm exited unexpectedly: %v", e.Err)
	} else {
		b.WriteString("vmm exited unexpectedly with status 0 (guest shut down, rebooted or panicked)")
	}
	if s := strings.TrimSpace(e.Log); s != "" {
		fmt.Fprintf(&b, "; vmm log: %s", s)
	}
	if s := strings.TrimSpace(e.Console); s != "" {
		fmt.Fprintf(&b, "; console: %s", s)
	}
	return b.String()
}

func (e *ExitError) Unwrap() error { return e.Err }
