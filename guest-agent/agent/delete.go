package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// killWait bounds how long delete waits for a killed process to be reaped.
const killWait = 10 * time.Second

// DeleteProcess forgets an exited exec process and frees its stdio.
func (s *Service) DeleteProcess(ctx context.Context, req *agentapi.ProcessRequest) (*emptypb.Empty, error) {
	if req.GetExecId() == "" {
		return nil, invalid("exec id is empty: the init process goes with DeleteContainer")
	}
	c, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	st, _ := p.state()
	if err := allowed(processOps, p.what, st, opDelete); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	delete(c.execs, req.GetExecId())
	c.mu.Unlock()
	p.release()
	return &emptypb.Empty{}, nil
}

// DeleteContainer destroys a container whose init exited, or that was
// never started, and frees everything it held in the guest: cgroup,
// libcontainer state, rootfs mount, stdio.
func (s *Service) DeleteContainer(ctx context.Context, req *agentapi.ContainerRequest) (*emptypb.Empty, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(fieldContainer, c.id))
	if err := c.allow(opDelete); err != nil {
		return nil, err
	}
	if c.state() == statusCreated {
		// Never started: its init waits on the exec fifo. Kill it and
		// let its waiter record the exit, so Destroy sees it stopped.
		if err := c.lc.Signal(unix.SIGKILL); err != nil {
			log.G(ctx).WithError(err).Debug("kill created init")
		}
		select {
		case <-c.init.exited:
		case <-time.After(killWait):
			return nil, fmt.Errorf("delete %s: init did not exit after SIGKILL", c.what())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	// Destroy may run poststop hooks, which fork and wait.
	hold := s.opts.Reaper.Hold()
	err = c.lc.Destroy()
	hold()
	if err != nil {
		return nil, fmt.Errorf("delete %s: %w", c.what(), err)
	}

	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	for _, p := range c.processes() {
		p.release()
	}
	if c.rootfsMount != "" {
		unmountRootfs(ctx, c.rootfsMount)
	}
	if c.image != nil {
		removeImage(ctx, c.image)
	}
	return &emptypb.Empty{}, nil
}
