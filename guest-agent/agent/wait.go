package agent

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// WaitProcess blocks until the process exited, or ctx is done.
func (s *Service) WaitProcess(ctx context.Context, req *agentapi.WaitProcessRequest) (*agentapi.WaitProcessResponse, error) {
	_, p, err := s.process(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &agentapi.WaitProcessResponse{
		ExitStatus: p.exitStatus,
		ExitedAt:   timestamppb.New(p.exitedAt),
	}, nil
}
