package shim

import (
	"context"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// State reports a process's status as containerd's task API defines it.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	code, at := p.exit()
	return &taskAPI.StateResponse{
		ID:         p.idForEvent(),
		Bundle:     c.bundle,
		Pid:        p.getPid(),
		Status:     p.status().task(),
		Stdin:      p.stdio.stdin,
		Stdout:     p.stdio.stdout,
		Stderr:     p.stdio.stderr,
		Terminal:   p.stdio.terminal,
		ExitStatus: code,
		ExitedAt:   toTimestamp(at),
		ExecID:     r.ExecID,
	}, nil
}

func (s status) task() task.Status {
	switch s {
	case statusCreated:
		return task.Status_CREATED
	case statusRunning:
		return task.Status_RUNNING
	case statusPaused:
		return task.Status_PAUSED
	case statusStopped:
		return task.Status_STOPPED
	}
	return task.Status_UNKNOWN
}

func toTimestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return protobuf.ToTimestamp(t)
}
