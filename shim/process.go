package shim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// status is the lifecycle state of a process as containerd sees it.
type status int

const (
	statusCreated status = iota
	statusRunning
	statusPaused
	statusStopped
)

func (s status) String() string {
	switch s {
	case statusCreated:
		return "created"
	case statusRunning:
		return "running"
	case statusPaused:
		return "paused"
	case statusStopped:
		return "stopped"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// process is a container's init process (execID "") or an exec process.
type process struct {
	containerID string
	execID      string
	stdio       stdio
	spec        []byte // OCI process spec (JSON), exec processes only

	mu         sync.Mutex
	state      status    // guarded by mu
	pid        uint32    // guest pid, guarded by mu
	exitStatus uint32    // guarded by mu
	exitedAt   time.Time // guarded by mu
	io         *procIO   // guarded by mu; nil before start or without stdio

	exited chan struct{} // closed once the process has exited
}

func newProcess(containerID, execID string, io stdio, spec []byte) *process {
	return &process{
		containerID: containerID,
		execID:      execID,
		stdio:       io,
		spec:        spec,
		exited:      make(chan struct{}),
	}
}

// transition moves the process from one of from to to, or fails with
// ErrFailedPrecondition naming the state it is in.
func (p *process) transition(to status, from ...status) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range from {
		if p.state == f {
			p.state = to
			return nil
		}
	}
	return fmt.Errorf("process %s is %s, cannot become %s: %w", p.name(), p.state, to, errdefs.ErrFailedPrecondition)
}

func (p *process) name() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.containerID + "/" + p.execID
}

func (p *process) status() status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

func (p *process) setPid(pid uint32) {
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
}

func (p *process) getPid() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// setExited records the exit once; later calls report false.
func (p *process) setExited(code uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hasExited() {
		return false
	}
	p.state = statusStopped
	p.exitStatus = code
	p.exitedAt = at
	close(p.exited)
	return true
}

func (p *process) exit() (uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitStatus, p.exitedAt
}

// wait blocks until the process exits or ctx ends.
func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Exit codes the shim reports for processes that did not exit by themselves.
const (
	// exitCodeFailedStart is reported for a process that never started.
	exitCodeFailedStart = 255
	// exitCodeVMGone is reported for processes whose VM died under them,
	// as if they had been killed (128 + SIGKILL).
	exitCodeVMGone = 137
)

// idForEvent is the id containerd expects in TaskExit: the exec id, or the
// container id for the init process.
func (p *process) idForEvent() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.execID
}

func (p *process) getIO() *procIO {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.io
}

func (p *process) drainIO() {
	if pio := p.getIO(); pio != nil {
		pio.drain(drainTimeout)
	}
}

func (p *process) closeIO() {
	if pio := p.getIO(); pio != nil {
		pio.close()
	}
}
