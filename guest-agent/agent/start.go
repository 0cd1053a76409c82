package agent

import (
	"context"
	"fmt"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// StartContainer lets a created container's init run the user's program.
func (s *Service) StartContainer(ctx context.Context, req *agentapi.StartContainerRequest) (*agentapi.StartResponse, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	// c.mu is held across Exec so that a concurrent start, pause or delete
	// sees either created or running, never a half-started container.
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := containerLifecycle.next(c.what(), c.status, eventStart)
	if err != nil {
		return nil, err
	}
	if err := c.lc.Exec(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.id, err)
	}
	c.status = next
	if err := c.init.start(); err != nil {
		return nil, err
	}
	_, pid := c.init.state()
	return &agentapi.StartResponse{Pid: uint32(pid)}, nil
}
