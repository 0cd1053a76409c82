package agent

import (
	"context"
	"fmt"

	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// ListPids returns the guest pids of every process in the container's
// cgroup.
func (s *Service) ListPids(ctx context.Context, req *agentapi.ContainerRequest) (*agentapi.ListPidsResponse, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("list pids of %s: %w", c.what(), err)
	}
	resp := &agentapi.ListPidsResponse{Pids: make([]uint32, 0, len(pids))}
	for _, pid := range pids {
		resp.Pids = append(resp.Pids, uint32(pid))
	}
	return resp, nil
}

// StatsContainer reports the container's cgroup CPU, memory and pids
// figures.
func (s *Service) StatsContainer(ctx context.Context, req *agentapi.ContainerRequest) (*agentapi.StatsResponse, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.what(), err)
	}
	resp := &agentapi.StatsResponse{}
	if cg := st.CgroupStats; cg != nil {
		resp.CpuUsageNs = cg.CpuStats.CpuUsage.TotalUsage
		resp.CpuUserNs = cg.CpuStats.CpuUsage.UsageInUsermode
		resp.CpuSystemNs = cg.CpuStats.CpuUsage.UsageInKernelmode
		resp.MemoryUsageBytes = cg.MemoryStats.Usage.Usage
		resp.MemoryLimitBytes = cg.MemoryStats.Usage.Limit
		resp.PidsCurrent = cg.PidsStats.Current
		resp.PidsLimit = cg.PidsStats.Limit
	}
	// CRI tells an OOM-killed container by these counters.
	c.mu.Lock()
	group := c.spec.Linux.CgroupsPath
	c.mu.Unlock()
	if ev, err := memoryEvents(group); err == nil {
		resp.MemoryEvents = ev
	} else {
		log.G(ctx).WithError(err).Debug("no memory events")
	}
	return resp, nil
}

// UpdateContainer applies new cgroup resources to a container.
func (s *Service) UpdateContainer(ctx context.Context, req *agentapi.UpdateContainerRequest) (*emptypb.Empty, error) {
	res, err := parseResources(req.GetResources())
	if err != nil {
		return nil, err
	}
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := allowed(containerOps, c.what(), c.status, opUpdate); err != nil {
		return nil, err
	}

	// Convert through a copy of the spec so the same rules apply as at
	// create.
	spec := *c.spec
	linux := *spec.Linux
	linux.Resources = res
	spec.Linux = &linux
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: c.id, Spec: &spec}, nil)
	if err != nil {
		return nil, invalid("convert resources: %v", err)
	}
	cfg := c.lc.Config()
	newCg := *cfg.Cgroups
	newRes := *cg.Resources
	// Device rules cannot be updated (as with runc update): keep the
	// ones made at create, which include the default devices.
	newRes.Devices = cfg.Cgroups.Resources.Devices
	newCg.Resources = &newRes
	cfg.Cgroups = &newCg
	if err := c.lc.Set(cfg); err != nil {
		return nil, fmt.Errorf("update %s: %w", c.what(), err)
	}
	c.spec = &spec
	return &emptypb.Empty{}, nil
}
