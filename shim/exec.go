package shim

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// Exec registers an exec process; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptyResponse, error) {
	if r.ExecID == "" {
		return nil, fmt.Errorf("exec: empty exec id: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if c.pause {
		return nil, fmt.Errorf("exec in pod sandbox %s: %w", r.ID, errdefs.ErrNotImplemented)
	}
	if st := c.init.status(); st != statusRunning {
		return nil, fmt.Errorf("exec in container %s: container is %s: %w", r.ID, st, errdefs.ErrFailedPrecondition)
	}
	if r.Spec == nil || len(r.Spec.GetValue()) == 0 {
		return nil, fmt.Errorf("exec %s: missing process spec: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	io := stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	if err := io.validate(); err != nil {
		return nil, err
	}
	// The spec is the OCI process encoded as JSON, as the agent expects it.
	if err := c.addExec(newProcess(r.ID, r.ExecID, io, r.Spec.GetValue())); err != nil {
		return nil, err
	}
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return empty, nil
}
