package shim

import (
	"context"
	"encoding/json"
	"fmt"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// Pause freezes every process of a container.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptyResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if c.pause {
		return nil, fmt.Errorf("pause %s: a pod sandbox cannot be paused: %w", r.ID, errdefs.ErrNotImplemented)
	}
	if err := c.init.transition(statusPaused, statusRunning); err != nil {
		return nil, err
	}
	sb, err := s.runningSandbox()
	if err != nil {
		c.init.transition(statusRunning, statusPaused)
		return nil, fmt.Errorf("pause %s: %w", r.ID, err)
	}
	if _, err := sb.agent.PauseContainer(ctx, &agent.ContainerRequest{ContainerId: r.ID}); err != nil {
		c.init.transition(statusRunning, statusPaused)
		return nil, fmt.Errorf("pause %s: %w", r.ID, fromAgent(err))
	}
	s.send(&eventstypes.TaskPaused{ContainerID: r.ID})
	return empty, nil
}

// Resume thaws a paused container.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptyResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if st := c.init.status(); st != statusPaused {
		return nil, fmt.Errorf("resume %s: container is %s: %w", r.ID, st, errdefs.ErrFailedPrecondition)
	}
	sb, err := s.runningSandbox()
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", r.ID, err)
	}
	if _, err := sb.agent.ResumeContainer(ctx, &agent.ContainerRequest{ContainerId: r.ID}); err != nil {
		return nil, fmt.Errorf("resume %s: %w", r.ID, fromAgent(err))
	}
	c.init.transition(statusRunning, statusPaused)
	s.send(&eventstypes.TaskResumed{ContainerID: r.ID})
	return empty, nil
}

// Pids lists the container's processes in the guest, naming exec processes.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if c.pause {
		return &taskAPI.PidsResponse{}, nil
	}
	sb, err := s.runningSandbox()
	if err != nil {
		return nil, fmt.Errorf("list pids of %s: %w", r.ID, err)
	}
	resp, err := sb.agent.ListPids(ctx, &agent.ContainerRequest{ContainerId: r.ID})
	if err != nil {
		return nil, fmt.Errorf("list pids of %s: %w", r.ID, fromAgent(err))
	}
	execs := map[uint32]string{}
	for _, p := range c.processes()[1:] {
		if pid := p.getPid(); pid != 0 {
			execs[pid] = p.execID
		}
	}
	var ps []*task.ProcessInfo
	for _, pid := range resp.Pids {
		info := &task.ProcessInfo{Pid: pid}
		if id, ok := execs[pid]; ok {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id})
			if err != nil {
				return nil, fmt.Errorf("encode process details: %w", err)
			}
			info.Info = a
		}
		ps = append(ps, info)
	}
	return &taskAPI.PidsResponse{Processes: ps}, nil
}

// CloseIO closes a process's stdin once what was written has been sent.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptyResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		if pio := p.getIO(); pio != nil {
			pio.CloseStdin()
		}
	}
	return empty, nil
}

// ResizePty sets the size of a process's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptyResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !p.stdio.terminal {
		return nil, fmt.Errorf("resize %s: process has no terminal: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	sb, err := s.runningSandbox()
	if err != nil {
		return nil, fmt.Errorf("resize %s: %w", p.name(), err)
	}
	if _, err := sb.agent.ResizePty(ctx, &agent.ResizePtyRequest{
		ContainerId: r.ID, ExecId: r.ExecID, Width: r.Width, Height: r.Height,
	}); err != nil {
		return nil, fmt.Errorf("resize %s: %w", p.name(), fromAgent(err))
	}
	return empty, nil
}

// Update applies new resource limits to a container's cgroup in the guest.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptyResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if c.pause {
		// The VM's size is fixed at boot; the limits of the pod's
		// containers still apply inside it.
		return empty, nil
	}
	if r.Resources == nil {
		return nil, fmt.Errorf("update %s: no resources: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	// containerd encodes the OCI LinuxResources as JSON.
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, fmt.Errorf("update %s: decode resources: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
	}
	// The VM grows first, so that the container has what it is given at
	// once; the new limits apply in the guest whether or not it could.
	sb, err := s.runningSandbox()
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", r.ID, err)
	}
	c.setLimits(limitsOf(&res))
	if err := s.growForLimits(ctx, sb); err != nil {
		log.G(ctx).WithError(err).WithField(logContainer, r.ID).Warn("VM keeps its size")
	}
	if _, err := sb.agent.UpdateContainer(ctx, &agent.UpdateContainerRequest{
		ContainerId: r.ID, Resources: r.Resources.GetValue(),
	}); err != nil {
		return nil, fmt.Errorf("update %s: %w", r.ID, fromAgent(err))
	}
	return empty, nil
}

// Stats returns the container's cgroup figures from the guest, in the
// cgroup v2 metrics format that crictl and ctr understand.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	st := &agent.StatsResponse{}
	// A pod's sandbox container has no processes of its own.
	if !c.pause {
		sb, err := s.runningSandbox()
		if err != nil {
			return nil, fmt.Errorf("stats %s: %w", r.ID, err)
		}
		st, err = sb.agent.StatsContainer(ctx, &agent.ContainerRequest{ContainerId: r.ID})
		if err != nil {
			return nil, fmt.Errorf("stats %s: %w", r.ID, fromAgent(err))
		}
	}
	m := &v2stats.Metrics{
		CPU: &v2stats.CPUStat{
			UsageUsec:  st.CpuUsageNs / 1000,
			UserUsec:   st.CpuUserNs / 1000,
			SystemUsec: st.CpuSystemNs / 1000,
		},
		Memory: &v2stats.MemoryStat{Usage: st.MemoryUsageBytes, UsageLimit: st.MemoryLimitBytes},
		Pids:   &v2stats.PidsStat{Current: st.PidsCurrent, Limit: st.PidsLimit},
	}
	// CRI reads OOM kills from here: at a container's exit, to tell
	// OOMKilled, and for container_oom_events_total.
	if ev := st.MemoryEvents; ev != nil {
		m.MemoryEvents = &v2stats.MemoryEvents{Low: ev.Low, High: ev.High, Max: ev.Max, Oom: ev.Oom, OomKill: ev.OomKill}
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("encode stats: %w", err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

// Checkpoint is not supported: a VM sandbox is snapshotted as a whole.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptyResponse, error) {
	return nil, fmt.Errorf("checkpoint %s: %w", r.ID, errdefs.ErrNotImplemented)
}
