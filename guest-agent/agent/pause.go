package agent

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// PauseContainer freezes every process of a running container.
func (s *Service) PauseContainer(ctx context.Context, req *agentapi.ContainerRequest) (*emptypb.Empty, error) {
	return s.freeze(req.GetContainerId(), eventPause)
}

// ResumeContainer thaws a paused container.
func (s *Service) ResumeContainer(ctx context.Context, req *agentapi.ContainerRequest) (*emptypb.Empty, error) {
	return s.freeze(req.GetContainerId(), eventResume)
}

func (s *Service) freeze(id string, e event) (*emptypb.Empty, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := containerLifecycle.next(c.what(), c.status, e)
	if err != nil {
		return nil, err
	}
	if e == eventPause {
		err = c.lc.Pause()
	} else {
		err = c.lc.Resume()
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", e, c.what(), err)
	}
	c.status = next
	return &emptypb.Empty{}, nil
}
