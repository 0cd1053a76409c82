package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// maxSignal is the highest real-time signal on Linux.
const maxSignal = 64

// SignalProcess sends a signal to a process, or to every process of the
// container when all is set.
func (s *Service) SignalProcess(ctx context.Context, req *agentapi.SignalProcessRequest) (*emptypb.Empty, error) {
	if req.GetSignal() > maxSignal {
		return nil, invalid("signal %d", req.GetSignal())
	}
	sig := unix.Signal(req.GetSignal())
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if req.GetAll() {
		if err := c.allow(opSignal); err != nil {
			return nil, err
		}
		if err := c.signalAll(sig); err != nil {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	}
	p, err := c.process(req.GetExecId())
	if err != nil {
		return nil, err
	}
	if p != c.init {
		if err := p.signal(sig); err != nil {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	}
	// The init goes through libcontainer, which also thaws a frozen
	// cgroup for SIGKILL so the kill takes effect.
	if err := c.allow(opSignal); err != nil {
		return nil, err
	}
	st, pid := p.state()
	if st == statusStopped {
		return nil, fmt.Errorf("signal %s: its init has exited: %w", c.what(), errdefs.ErrNotFound)
	}
	if c.privatePID() {
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		awaitHandler(ctx, pid, sig, started)
	}
	if err := c.lc.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return nil, fmt.Errorf("signal %s: its init has exited: %w", c.what(), errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("signal %s: %w", c.what(), err)
	}
	return &emptypb.Empty{}, nil
}
