// Package shim implements the containerd task service (shim v2) of scc:
// every sandbox is one VM, and every container of the sandbox runs in it
// through the guest agent.
package shim

import (
	"context"
	"fmt"
	"os"
	"sync"

	eventstypes "github.com/containerd/containerd/api/events"
	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
)

var _ taskAPI.TTRPCTaskService = (*service)(nil)

// service is the task service of one shim, which owns one sandbox VM.
type service struct {
	// ctx lives as long as the shim; it carries the namespace.
	ctx      context.Context
	shutdown shutdown.Service
	events   chan any

	// bootMu serialises booting the sandbox VM; it is held for the whole
	// boot, so it is never taken with mu held.
	bootMu sync.Mutex

	mu         sync.Mutex
	sandbox    *sandbox              // guarded by mu; nil until the first Create
	containers map[string]*container // guarded by mu
	// pod is the pod containerd's sandbox API created (sandboxer.go),
	// guarded by mu; nil on the classic path, where a pod's sandbox
	// container stands for its VM.
	pod *podSandbox
}

// NewTaskService returns the task service registered by the shim plugin.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TTRPCTaskService, error) {
	ns, _ := namespaces.Namespace(ctx)
	s := &service{
		ctx:        ctx,
		shutdown:   sd,
		events:     make(chan any, 128),
		containers: make(map[string]*container),
	}
	go s.forward(namespaces.WithNamespace(context.Background(), ns), publisher)
	sd.RegisterCallback(func(ctx context.Context) error {
		s.mu.Lock()
		sb := s.sandbox
		s.sandbox = nil
		s.mu.Unlock()
		if sb != nil {
			return sb.end(ctx)
		}
		return nil
	})
	return s, nil
}

// RegisterTTRPC implements shim.TTRPCService: the task API, and the
// sandbox API for containerd's CRI with sandboxer = "shim".
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	sandboxAPI.RegisterTTRPCSandboxService(server, s)
	return nil
}

// forward publishes events in the order they were sent.
func (s *service) forward(ctx context.Context, publisher shim.Publisher) {
	for e := range s.events {
		if err := publisher.Publish(ctx, topic(e), e); err != nil {
			log.G(ctx).WithError(err).Error("post event")
		}
	}
	publisher.Close()
}

func (s *service) send(evt any) {
	s.events <- evt
}

func topic(e any) string {
	switch e.(type) {
	case *eventstypes.TaskCreate:
		return runtime.TaskCreateEventTopic
	case *eventstypes.TaskStart:
		return runtime.TaskStartEventTopic
	case *eventstypes.TaskExit:
		return runtime.TaskExitEventTopic
	case *eventstypes.TaskDelete:
		return runtime.TaskDeleteEventTopic
	case *eventstypes.TaskExecAdded:
		return runtime.TaskExecAddedEventTopic
	case *eventstypes.TaskExecStarted:
		return runtime.TaskExecStartedEventTopic
	case *eventstypes.TaskPaused:
		return runtime.TaskPausedEventTopic
	case *eventstypes.TaskResumed:
		return runtime.TaskResumedEventTopic
	case *eventstypes.TaskOOM:
		return runtime.TaskOOMEventTopic
	}
	return runtime.TaskUnknownTopic
}

func (s *service) getContainer(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// Connect returns the shim's pid and the task's pid.
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.getContainer(r.ID); err == nil {
		resp.TaskPid = c.init.getPid()
	}
	return resp, nil
}

// Shutdown stops the VM and the shim once no container is left. A pod of
// the sandbox API keeps its shim until ShutdownSandbox.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptyResponse, error) {
	s.mu.Lock()
	n := len(s.containers)
	pod := s.pod
	s.mu.Unlock()
	if n > 0 || pod != nil {
		return empty, nil
	}
	s.shutdown.Shutdown()
	return empty, nil
}
