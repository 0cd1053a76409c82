package shim

import (
	"context"
	"errors"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// Delete removes an exited process, or a container whose init exited (or
// never started), with its guest state and host mounts.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.status()
	if st == statusRunning || st == statusPaused {
		return nil, fmt.Errorf("delete %s: process is %s: %w", p.name(), st, errdefs.ErrFailedPrecondition)
	}
	sb := s.currentSandbox()
	if r.ExecID != "" {
		switch {
		case st == statusCreated:
			p.setExited(0, time.Now())
		case vmGone(sb):
			// Nothing of it is left in a VM that is gone.
		default:
			if _, err := sb.agent.DeleteProcess(ctx, &agent.ProcessRequest{ContainerId: r.ID, ExecId: r.ExecID}); err != nil && !sb.lost(err) {
				log.G(ctx).WithError(err).WithField(logExec, r.ExecID).Warn("delete process in guest")
			}
		}
		p.closeIO()
		c.removeExec(r.ExecID)
		code, at := p.exit()
		return &taskAPI.DeleteResponse{Pid: p.getPid(), ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
	}

	for _, e := range c.processes()[1:] {
		if st := e.status(); st == statusRunning || st == statusPaused {
			return nil, fmt.Errorf("delete %s: exec %s is %s: %w", r.ID, e.execID, st, errdefs.ErrFailedPrecondition)
		}
	}
	if !vmGone(sb) && !c.pause {
		if _, err := sb.agent.DeleteContainer(ctx, &agent.ContainerRequest{ContainerId: r.ID}); err != nil && !errdefs.IsNotFound(fromAgent(err)) && !sb.lost(err) {
			return nil, fmt.Errorf("delete %s in guest: %w", r.ID, fromAgent(err))
		}
	}
	if st == statusCreated {
		p.setExited(0, time.Now())
	}
	for _, e := range c.processes() {
		e.closeIO()
	}
	if err := c.unmount(); err != nil {
		log.G(ctx).WithError(err).Warn("unshare rootfs")
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	s.mu.Unlock()

	code, at := p.exit()
	s.send(&eventstypes.TaskDelete{
		ContainerID: r.ID,
		ID:          r.ID,
		Pid:         p.getPid(),
		ExitStatus:  code,
		ExitedAt:    protobuf.ToTimestamp(at),
	})
	return &taskAPI.DeleteResponse{Pid: p.getPid(), ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// vmGone reports whether the sandbox VM has exited.
func vmGone(sb *sandbox) bool {
	if sb == nil || sb.vm == nil {
		return true
	}
	select {
	case <-sb.vm.Done():
		return true
	default:
		return false
	}
}

// lost reports whether err from an agent call means the VM is gone: a
// closed connection, with the VM's exit seen within vmExitGrace. The VM
// dying closes the agent socket before its exit is observed.
func (sb *sandbox) lost(err error) bool {
	if sb == nil || sb.vm == nil {
		return true
	}
	if !errors.Is(err, ttrpc.ErrClosed) {
		return vmGone(sb)
	}
	select {
	case <-sb.vm.Done():
		return true
	case <-time.After(vmExitGrace):
		return false
	}
}
