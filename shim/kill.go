package shim

import (
	"context"
	"fmt"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// Kill signals a process, or every process of the container with All.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptyResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.hasExited() {
		return nil, fmt.Errorf("kill %s: process already finished: %w", p.name(), errdefs.ErrNotFound)
	}
	c, _ := s.getContainer(r.ID)
	if c != nil && c.pause && r.ExecID == "" {
		s.killPause(c, syscall.Signal(r.Signal))
		return empty, nil
	}
	sb := s.currentSandbox()
	if vmGone(sb) {
		return nil, fmt.Errorf("kill %s: VM is gone: %w", p.name(), errdefs.ErrNotFound)
	}
	if _, err := sb.agent.SignalProcess(ctx, &agent.SignalProcessRequest{
		ContainerId: r.ID,
		ExecId:      r.ExecID,
		Signal:      r.Signal,
		All:         r.All,
	}); err != nil {
		return nil, fmt.Errorf("kill %s: %w", p.name(), fromAgent(err))
	}
	return empty, nil
}

// Wait blocks until the process exits.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	code, at := p.exit()
	return &taskAPI.WaitResponse{ExitStatus: code, ExitedAt: toTimestamp(at)}, nil
}

// killPause ends a pod's sandbox container as the pause process would: it
// exits 0 on SIGTERM and SIGINT, and dies of any other signal. The VM
// stays until the shim shuts down, once every container is deleted.
func (s *service) killPause(c *container, sig syscall.Signal) {
	code := uint32(128 + sig)
	if sig == syscall.SIGTERM || sig == syscall.SIGINT {
		code = 0
	}
	s.recordExit(c, c.init, code, time.Now())
}
