package shim

import (
	"context"
	"errors"
	goruntime "runtime"
	"testing"
	"time"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// newTestService is a task and sandbox service with no VM, whose shutdown
// the test can observe.
func newTestService(t *testing.T) (*service, shutdown.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx, sd := shutdown.WithShutdown(ctx)
	return &service{ctx: ctx, shutdown: sd, events: make(chan any, 16), containers: map[string]*container{}}, sd
}

// TestSandboxAPIWithoutStart drives a pod of the sandbox API that is
// stopped before it starts: what CRI does when RunPodSandbox fails
// between CreateSandbox and StartSandbox. No VM is involved.
func TestSandboxAPIWithoutStart(t *testing.T) {
	s, sd := newTestService(t)
	ctx := context.Background()
	const id = "pod1"

	if _, err := s.CreateSandbox(ctx, &sandboxAPI.CreateSandboxRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("create without id: %v, want invalid argument", err)
	}
	if _, err := s.CreateSandbox(ctx, &sandboxAPI.CreateSandboxRequest{SandboxID: id, Options: criOptions(t, &runtime.PodSandboxConfig{Hostname: "h"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSandbox(ctx, &sandboxAPI.CreateSandboxRequest{SandboxID: "pod2"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second sandbox in one shim: %v, want already exists", err)
	}
	if _, err := s.SandboxStatus(ctx, &sandboxAPI.SandboxStatusRequest{SandboxID: "pod2"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("status of another sandbox: %v, want not found", err)
	}
	st, err := s.SandboxStatus(ctx, &sandboxAPI.SandboxStatusRequest{SandboxID: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.SandboxID != id || st.State != runtime.PodSandboxState_SANDBOX_NOTREADY.String() || st.Pid != 0 || st.CreatedAt == nil || st.ExitedAt != nil {
		t.Errorf("status of a created sandbox: %+v", st)
	}
	if st.Info["info"] == "" {
		t.Error("verbose status without info")
	}
	pl, err := s.Platform(ctx, &sandboxAPI.PlatformRequest{SandboxID: id})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Platform.OS != goruntime.GOOS || pl.Platform.Architecture != goruntime.GOARCH {
		t.Errorf("platform %+v", pl.Platform)
	}
	if _, err := s.PingSandbox(ctx, &sandboxAPI.PingRequest{SandboxID: id}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ping before start: %v, want failed precondition", err)
	}
	if _, err := s.SandboxMetrics(ctx, &sandboxAPI.SandboxMetricsRequest{SandboxID: id}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("metrics before start: %v, want failed precondition", err)
	}
	if _, err := s.UpdateSandbox(ctx, &sandboxAPI.UpdateSandboxRequest{SandboxID: id}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("update: %v, want not implemented", err)
	}

	// A container of the pod finds no VM to run in, and none boots for it.
	spec := &specs.Spec{Annotations: map[string]string{annotationContainerType: containerTypeContainer, sandboxIDAnnotations[0]: id}}
	if _, err := s.ensureSandbox(ctx, id, "", spec); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("container before the pod started: %v, want failed precondition", err)
	}
	if s.currentSandbox() != nil {
		t.Error("a VM started for a container of a pod of the sandbox API")
	}
	// Deleting a container's task does not end the pod's shim.
	if _, err := s.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sd.Done():
		t.Fatal("the task API shut down the shim of a pod")
	default:
	}

	waited := make(chan *sandboxAPI.WaitSandboxResponse, 1)
	go func() {
		w, err := s.WaitSandbox(ctx, &sandboxAPI.WaitSandboxRequest{SandboxID: id})
		if err != nil {
			t.Error(err)
		}
		waited <- w
	}()
	if _, err := s.StopSandbox(ctx, &sandboxAPI.StopSandboxRequest{SandboxID: id}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-waited:
		if w.ExitStatus != 0 || w.ExitedAt == nil {
			t.Errorf("wait: %+v, want exit 0 with a time", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSandbox did not return after StopSandbox")
	}
	if _, err := s.StopSandbox(ctx, &sandboxAPI.StopSandboxRequest{SandboxID: id}); err != nil {
		t.Errorf("stopping again: %v", err)
	}
	if _, err := s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: id}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("start after stop: %v, want failed precondition", err)
	}
	st, err = s.SandboxStatus(ctx, &sandboxAPI.SandboxStatusRequest{SandboxID: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.PodSandboxState_SANDBOX_NOTREADY.String() || st.ExitedAt == nil {
		t.Errorf("status of a stopped sandbox: %+v", st)
	}

	if _, err := s.ShutdownSandbox(ctx, &sandboxAPI.ShutdownSandboxRequest{SandboxID: id}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sd.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("ShutdownSandbox did not end the shim")
	}
}

// TestCreateSandboxInClassicShim refuses a pod in a shim that already
// runs containers of its own.
func TestCreateSandboxInClassicShim(t *testing.T) {
	s, _ := newTestService(t)
	s.containers["c1"] = &container{id: "c1"}
	if _, err := s.CreateSandbox(context.Background(), &sandboxAPI.CreateSandboxRequest{SandboxID: "pod1"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("create: %v, want failed precondition", err)
	}
}

func TestPodTransitions(t *testing.T) {
	p := newPodSandbox("pod1", "", podConfig{})
	if err := p.transition(podRunning, podStarting); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("created -> running must fail, got %v", err)
	}
	if err := p.transition(podStarting, podCreated); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	p.mu.Lock()
	p.setExitedLocked(137, at)
	p.setExitedLocked(0, at.Add(time.Second))
	p.mu.Unlock()
	select {
	case <-p.exited:
	default:
		t.Fatal("exited not closed")
	}
	if st := p.snapshot(); st.state != podStopped || st.exitStatus != 137 || !st.exitedAt.Equal(at) {
		t.Errorf("status %+v, want the first exit", st)
	}
}
