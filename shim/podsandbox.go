package shim

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// podState is the lifecycle of a pod of the sandbox API:
//
//	created ─StartSandbox─▶ starting ──▶ running ─StopSandbox─▶ stopping ──▶ stopped
//	   │                       │            │                                  ▲
//	   │                       └─ fails ────┼──── VM dies ─────────────────────┤
//	   └──────────────── StopSandbox ───────┴──────────────────────────────────┘
type podState int

const (
	podCreated podState = iota
	podStarting
	podRunning
	podStopping
	podStopped
)

func (st podState) String() string {
	switch st {
	case podCreated:
		return "created"
	case podStarting:
		return "starting"
	case podRunning:
		return "running"
	case podStopping:
		return "stopping"
	case podStopped:
		return "stopped"
	}
	return fmt.Sprintf("podState(%d)", int(st))
}

// podSandbox is a pod containerd created through the sandbox API.
type podSandbox struct {
	id        string
	bundle    string // containerd's bundle of the sandbox; "" for none
	config    podConfig
	createdAt time.Time
	exited    chan struct{} // closed once the pod is stopped

	mu         sync.Mutex
	state      podState           // guarded by mu
	vm         *sandbox           // the pod's VM once started, until stopped; guarded by mu
	ports      *hostPortPublisher // a host-network pod's published ports, guarded by mu
	files      podFiles           // the files bound into its containers, guarded by mu
	pid        uint32             // QEMU's pid while running, guarded by mu
	exitStatus uint32             // guarded by mu
	exitedAt   time.Time          // guarded by mu
}

func newPodSandbox(id, bundle string, pc podConfig) *podSandbox {
	return &podSandbox{id: id, bundle: bundle, config: pc, createdAt: time.Now(), exited: make(chan struct{})}
}

// transition moves the pod from one of from to to, or fails with
// ErrFailedPrecondition naming the state it is in.
func (p *podSandbox) transition(to podState, from ...podState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range from {
		if p.state == f {
			p.state = to
			return nil
		}
	}
	return fmt.Errorf("sandbox %s is %s, cannot become %s: %w", p.id, p.state, to, errdefs.ErrFailedPrecondition)
}

// setExitedLocked stops the pod with its exit status, once: a pod that
// already stopped keeps its first exit. p.mu must be held.
func (p *podSandbox) setExitedLocked(code uint32, at time.Time) {
	if !p.exitedAt.IsZero() {
		return
	}
	p.state = podStopped
	p.pid = 0
	p.exitStatus, p.exitedAt = code, at
	close(p.exited)
}

// podStatus is a consistent copy of a pod's state.
type podStatus struct {
	state      podState
	pid        uint32
	exitStatus uint32
	exitedAt   time.Time
}

// containerFiles returns the pod's files, for its containers.
func (p *podSandbox) containerFiles() podFiles {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.files
}

func (p *podSandbox) snapshot() podStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return podStatus{state: p.state, pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt}
}
