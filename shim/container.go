package shim

import (
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"
)

type emptyResponse = emptypb.Empty

var empty = &emptypb.Empty{}

// container is one container of the sandbox: its init process, its exec
// processes and the host mounts that share its rootfs with the guest.
type container struct {
	id     string
	bundle string
	init   *process
	// pause marks a pod's sandbox container, which has no process in the
	// guest: it stands for the VM, and runs until it is killed or the VM
	// dies.
	pause bool
	// unmount removes the host mounts made for the container; it must be
	// called once the guest no longer uses them.
	unmount func() error

	mu     sync.Mutex
	execs  map[string]*process // exec id -> process, guarded by mu
	limits limits              // what its resources ask of the VM, guarded by mu
}

func (c *container) getLimits() limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits
}

func (c *container) setLimits(l limits) {
	c.mu.Lock()
	c.limits = l
	c.mu.Unlock()
}

func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

func (c *container) addExec(p *process) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.execs[p.execID]; ok {
		return fmt.Errorf("exec %s in container %s: %w", p.execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.execs[p.execID] = p
	return nil
}

func (c *container) removeExec(execID string) {
	c.mu.Lock()
	delete(c.execs, execID)
	c.mu.Unlock()
}

// processes returns the init process and the exec processes.
func (c *container) processes() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}
