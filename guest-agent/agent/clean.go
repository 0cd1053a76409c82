package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
)

// Clean hands the guest to the monitor to be cleaned for the next tenant
// (confidential-restore reuse). The sandbox's containers must be gone.
// Once the monitor accepted, the agent serves the host until it hangs up
// and exits; the monitor ends whatever it left, cleans and starts the
// next agent.
func (s *Service) Clean(ctx context.Context, req *agentapi.CleanRequest) (*emptypb.Empty, error) {
	if len(req.GetNonce()) != 32 {
		return nil, fmt.Errorf("clean: nonce of %d bytes, want 32: %w", len(req.GetNonce()), errdefs.ErrInvalidArgument)
	}
	if s.opts.Monitor == nil || s.opts.EndForClean == nil {
		return nil, fmt.Errorf("clean: no monitor to clean the guest: %w", errdefs.ErrNotImplemented)
	}
	s.mu.Lock()
	n := len(s.containers) + len(s.reserved)
	s.mu.Unlock()
	if n > 0 {
		return nil, fmt.Errorf("clean: %d containers left: %w", n, errdefs.ErrFailedPrecondition)
	}
	if _, err := s.opts.Monitor.Clean(ctx, &monitorapi.CleanRequest{Nonce: req.GetNonce()}); err != nil {
		return nil, fmt.Errorf("clean: %w", errgrpc.ToNative(err))
	}
	s.forgetKey()
	s.opts.EndForClean()
	log.G(ctx).Info("clean accepted: the agent ends once the host hangs up")
	return &emptypb.Empty{}, nil
}

// Reused sets the clock of a cleaned VM that a sandbox took, after it
// waited paused, mixes host entropy into the kernel's pool and reports
// the VM's generation.
func (s *Service) Reused(ctx context.Context, req *agentapi.ReusedRequest) (*agentapi.ReusedResponse, error) {
	if len(req.GetEntropy()) < minRestoreEntropy {
		return nil, fmt.Errorf("reused: %d bytes of entropy, want at least %d: %w", len(req.GetEntropy()), minRestoreEntropy, errdefs.ErrInvalidArgument)
	}
	if req.GetTime() == nil {
		return nil, fmt.Errorf("reused: no time: %w", errdefs.ErrInvalidArgument)
	}
	if err := addEntropy(req.GetEntropy()); err != nil {
		return nil, fmt.Errorf("reused: %w", err)
	}
	tv := unix.NsecToTimeval(req.GetTime().AsTime().UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return nil, fmt.Errorf("reused: set clock: %w", err)
	}
	resp := &agentapi.ReusedResponse{}
	if s.opts.Monitor != nil {
		info, err := s.opts.Monitor.Info(ctx, &emptypb.Empty{})
		if err != nil {
			return nil, fmt.Errorf("reused: %w", errgrpc.ToNative(err))
		}
		resp.Generation = info.GetGeneration()
	}
	return resp, nil
}
