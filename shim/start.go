package shim

import (
	"context"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// Start starts a container's init process or an exec process.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	sb, err := s.runningSandbox()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name(), err)
	}
	if err := p.transition(statusRunning, statusCreated); err != nil {
		return nil, err
	}
	var pid uint32
	if c.pause {
		// The pod's sandbox runs as long as its VM does.
		pid = uint32(sb.vm.Pid())
		p.setPid(pid)
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
		return &taskAPI.StartResponse{Pid: pid}, nil
	}
	if r.ExecID == "" {
		resp, err := sb.agent.StartContainer(ctx, &agent.StartContainerRequest{ContainerId: r.ID})
		if err != nil {
			s.failStart(p)
			return nil, fmt.Errorf("start %s: %w", r.ID, fromAgent(err))
		}
		pid = resp.Pid
	} else {
		resp, err := sb.agent.ExecProcess(ctx, &agent.ExecProcessRequest{
			ContainerId: r.ID,
			ExecId:      r.ExecID,
			Process:     p.spec,
			Stdio:       p.stdio.config(),
		})
		if err != nil {
			s.failStart(p)
			return nil, fmt.Errorf("exec %s in %s: %w", r.ExecID, r.ID, fromAgent(err))
		}
		pid = resp.Pid
		// Exec output streams exist only once the process does.
		pio, err := openIO(ctx, sb.agent, r.ID, r.ExecID, p.stdio)
		if err != nil {
			return nil, fmt.Errorf("exec %s in %s: %w", r.ExecID, r.ID, err)
		}
		p.mu.Lock()
		p.io = pio
		p.mu.Unlock()
	}
	p.setPid(pid)
	go s.waitExit(sb, c, p)

	if r.ExecID == "" {
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: pid})
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// failStart records that a process never ran, so that Delete and Wait work.
func (s *service) failStart(p *process) {
	p.setExited(exitCodeFailedStart, time.Now())
	p.closeIO()
}

// waitExit waits for a process to exit in the guest, lets its output reach
// containerd, then records the exit and publishes it.
func (s *service) waitExit(sb *sandbox, c *container, p *process) {
	ctx := s.ctx
	resp, err := sb.agent.WaitProcess(ctx, &agent.WaitProcessRequest{ContainerId: p.containerID, ExecId: p.execID})
	code, at := uint32(exitCodeVMGone), time.Now()
	if err != nil {
		log.G(ctx).WithError(err).WithField(logContainer, p.containerID).WithField(logExec, p.execID).Warn("wait for process in guest")
	} else {
		code = resp.ExitStatus
		if resp.ExitedAt != nil {
			at = protobuf.FromTimestamp(resp.ExitedAt)
		}
	}
	p.drainIO()
	s.recordExit(c, p, code, at)
}

// recordExit marks the process stopped and publishes TaskExit once.
func (s *service) recordExit(c *container, p *process, code uint32, at time.Time) {
	if !p.setExited(code, at) {
		return
	}
	p.closeIO()
	s.send(&eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          p.idForEvent(),
		Pid:         p.getPid(),
		ExitStatus:  code,
		ExitedAt:    protobuf.ToTimestamp(at),
	})
}

func (s *service) currentSandbox() *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sandbox
}

// runningSandbox returns the shim's sandbox while its VM runs. A pod of
// the sandbox API that was stopped has none.
func (s *service) runningSandbox() (*sandbox, error) {
	sb := s.currentSandbox()
	if vmGone(sb) {
		return nil, fmt.Errorf("the sandbox VM is not running: %w", errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}
