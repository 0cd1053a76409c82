package shim

import (
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// The shim is also a sandboxer: it serves containerd's sandbox API, which
// containerd's CRI uses for a runtime handler with sandboxer = "shim".
// containerd then starts the shim for the pod itself (not for a pause
// container), CreateSandbox and StartSandbox make the pod's VM, and the
// pod's containers reach the same shim through the task API at the
// address StartSandbox's shim advertised. No pause container is created
// or run. StopSandbox stops the VM; ShutdownSandbox ends the shim.
var _ sandboxAPI.TTRPCSandboxService = (*service)(nil)

// CreateSandbox records the pod; its VM starts with StartSandbox.
func (s *service) CreateSandbox(ctx context.Context, r *sandboxAPI.CreateSandboxRequest) (*sandboxAPI.CreateSandboxResponse, error) {
	if r.SandboxID == "" {
		return nil, fmt.Errorf("create sandbox: empty sandbox id: %w", errdefs.ErrInvalidArgument)
	}
	pc, err := decodePodConfig(r.Options, r.NetnsPath, r.Annotations)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", r.SandboxID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.pod != nil:
		return nil, fmt.Errorf("create sandbox %s: the shim serves sandbox %s: %w", r.SandboxID, s.pod.id, errdefs.ErrAlreadyExists)
	case s.sandbox != nil || len(s.containers) > 0:
		return nil, fmt.Errorf("create sandbox %s: the shim already runs containers: %w", r.SandboxID, errdefs.ErrFailedPrecondition)
	}
	s.pod = newPodSandbox(r.SandboxID, r.BundlePath, pc)
	return &sandboxAPI.CreateSandboxResponse{}, nil
}

// StartSandbox starts the pod's VM, on the network CNI prepared for it,
// and returns its QEMU's pid.
func (s *service) StartSandbox(ctx context.Context, r *sandboxAPI.StartSandboxRequest) (*sandboxAPI.StartSandboxResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	if err := p.transition(podStarting, podCreated); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(logSandbox, p.id))
	if err := s.startPod(ctx, p); err != nil {
		p.mu.Lock()
		p.setExitedLocked(exitCodeFailedStart, time.Now())
		p.mu.Unlock()
		return nil, fmt.Errorf("start sandbox %s: %w", p.id, err)
	}
	st := p.snapshot()
	return &sandboxAPI.StartSandboxResponse{Pid: st.pid, CreatedAt: protobuf.ToTimestamp(p.createdAt)}, nil
}

// startPod starts the VM of a pod that is starting and makes it running.
// On failure it leaves no VM.
func (s *service) startPod(ctx context.Context, p *podSandbox) (retErr error) {
	// The configuration is the runtime options' (ConfigPath), which
	// Manager.Start passed to the shim's environment.
	sb, err := s.ensureVM(ctx, p.id, "", p.config.vmRequest())
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			if err := s.dropVM(ctx, sb); err != nil {
				log.G(ctx).WithError(err).Warn("stop the VM of a sandbox that failed to start")
			}
		}
	}()
	if _, err := sb.agent.ConfigureSandbox(ctx, p.config.configureRequest()); err != nil {
		return fmt.Errorf("configure pod: %w", fromAgent(err))
	}
	// They go with the VM's state directory.
	files, err := writePodFiles(sb.sharedDir, p.config.cri)
	if err != nil {
		return err
	}
	if p.bundle != "" {
		// For `delete` after the shim died: it finds the VM from here.
		if err := writeSandboxState(p.bundle, sb.dir); err != nil {
			return fmt.Errorf("record sandbox state: %w", err)
		}
	}
	ports, err := p.config.hostPorts()
	if err != nil {
		return err
	}
	var pub *hostPortPublisher
	if len(ports) > 0 {
		if pub, err = publishHostPorts(s.ctx, ports, sb.agent); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.state, p.vm, p.ports, p.files, p.pid = podRunning, sb, pub, files, uint32(sb.vm.Pid())
	p.mu.Unlock()
	go s.watchPod(p, sb.vm.Done())
	return nil
}

// watchPod reports the pod exited, killed, when its VM dies while it runs.
// Its VM is cleaned up when containerd stops the pod.
func (s *service) watchPod(p *podSandbox, vmDone <-chan struct{}) {
	<-vmDone
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == podRunning {
		p.setExitedLocked(exitCodeVMGone, time.Now())
	}
}

// Platform is the guest's platform, which is the host's: images of the
// pod's containers are pulled for it.
func (s *service) Platform(ctx context.Context, r *sandboxAPI.PlatformRequest) (*sandboxAPI.PlatformResponse, error) {
	if _, err := s.podByID(r.SandboxID); err != nil {
		return nil, err
	}
	return &sandboxAPI.PlatformResponse{Platform: &types.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}}, nil
}

// StopSandbox stops the pod's VM. containerd's CRI has stopped the pod's
// containers first; what still runs in the VM is killed with it.
func (s *service) StopSandbox(ctx context.Context, r *sandboxAPI.StopSandboxRequest) (*sandboxAPI.StopSandboxResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	if err := s.stopPod(ctx, p); err != nil {
		return nil, fmt.Errorf("stop sandbox %s: %w", p.id, err)
	}
	return &sandboxAPI.StopSandboxResponse{}, nil
}

// stopPod stops the pod's VM, if it has one, and records the pod's exit
// (0: stopped on purpose) unless its VM died before. Stopping a stopped
// pod cleans up after a VM that died.
func (s *service) stopPod(ctx context.Context, p *podSandbox) error {
	p.mu.Lock()
	switch p.state {
	case podStarting:
		p.mu.Unlock()
		return fmt.Errorf("sandbox %s is starting: %w", p.id, errdefs.ErrFailedPrecondition)
	case podStopping:
		p.mu.Unlock()
		select {
		case <-p.exited:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case podCreated, podRunning:
		p.state = podStopping
	}
	sb, pub := p.vm, p.ports
	p.vm, p.ports, p.files = nil, nil, podFiles{}
	p.mu.Unlock()

	pub.close()
	var err error
	if sb != nil {
		err = s.dropVM(ctx, sb)
	}
	p.mu.Lock()
	p.setExitedLocked(0, time.Now())
	p.mu.Unlock()
	return err
}

// dropVM stops a pod's VM and removes its state: it is no longer the
// shim's sandbox, and the processes that still ran in it are reported
// killed.
func (s *service) dropVM(ctx context.Context, sb *sandbox) error {
	s.mu.Lock()
	if s.sandbox == sb {
		s.sandbox = nil
	}
	s.mu.Unlock()
	err := sb.stop(context.WithoutCancel(ctx))
	now := time.Now()
	for _, c := range s.allContainers() {
		for _, p := range c.processes() {
			if st := p.status(); st == statusRunning || st == statusPaused {
				s.recordExit(c, p, exitCodeVMGone, now)
			}
		}
	}
	return err
}

// WaitSandbox returns once the pod stopped, with its exit status.
func (s *service) WaitSandbox(ctx context.Context, r *sandboxAPI.WaitSandboxRequest) (*sandboxAPI.WaitSandboxResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st := p.snapshot()
	return &sandboxAPI.WaitSandboxResponse{ExitStatus: st.exitStatus, ExitedAt: protobuf.ToTimestamp(st.exitedAt)}, nil
}

// podInfo is the verbose status of a pod: the fields of containerd's CRI
// sandbox info that a sandboxer knows.
type podInfo struct {
	Pid    uint32                    `json:"pid"`
	Status string                    `json:"processStatus"`
	Config *runtime.PodSandboxConfig `json:"config,omitempty"`
}

// SandboxStatus reports the pod's state as CRI names it: ready while its
// VM runs, not ready before and after.
func (s *service) SandboxStatus(ctx context.Context, r *sandboxAPI.SandboxStatusRequest) (*sandboxAPI.SandboxStatusResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	st := p.snapshot()
	state := runtime.PodSandboxState_SANDBOX_NOTREADY
	if st.state == podRunning {
		state = runtime.PodSandboxState_SANDBOX_READY
	}
	resp := &sandboxAPI.SandboxStatusResponse{
		SandboxID: p.id,
		Pid:       st.pid,
		State:     state.String(),
		CreatedAt: protobuf.ToTimestamp(p.createdAt),
		ExitedAt:  toTimestamp(st.exitedAt),
	}
	if r.Verbose {
		b, err := json.Marshal(podInfo{Pid: st.pid, Status: st.state.String(), Config: p.config.cri})
		if err != nil {
			return nil, fmt.Errorf("encode sandbox info: %w", err)
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// pingTimeout bounds PingSandbox's round trip to the agent.
const pingTimeout = 10 * time.Second

// PingSandbox checks that the pod's agent answers.
func (s *service) PingSandbox(ctx context.Context, r *sandboxAPI.PingRequest) (*sandboxAPI.PingResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	sb, err := s.podVM(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := sb.agent.Ping(ctx, &agent.PingRequest{}); err != nil {
		return nil, fmt.Errorf("ping sandbox %s: %w", p.id, fromAgent(err))
	}
	return &sandboxAPI.PingResponse{}, nil
}

// shutdownGrace is how long the shim outlives its answer to
// ShutdownSandbox. containerd's sandbox controller, unlike its task client,
// fails when the shim's connection closes before the answer arrived, and
// ttrpc tells a service nothing once its answer is written: exiting at once
// loses the answer now and then.
const shutdownGrace = 500 * time.Millisecond

// ShutdownSandbox stops the pod, if it still runs, and ends the shim once
// the answer is on its way.
func (s *service) ShutdownSandbox(ctx context.Context, r *sandboxAPI.ShutdownSandboxRequest) (*sandboxAPI.ShutdownSandboxResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	if err := s.stopPod(ctx, p); err != nil {
		return nil, fmt.Errorf("shut down sandbox %s: %w", p.id, err)
	}
	time.AfterFunc(shutdownGrace, s.shutdown.Shutdown)
	return &sandboxAPI.ShutdownSandboxResponse{}, nil
}

// SandboxMetrics returns the pod's figures, in the cgroup v2 metrics that
// CRI reads for pod stats: the sums of its running containers' cgroups in
// the guest.
func (s *service) SandboxMetrics(ctx context.Context, r *sandboxAPI.SandboxMetricsRequest) (*sandboxAPI.SandboxMetricsResponse, error) {
	p, err := s.podByID(r.SandboxID)
	if err != nil {
		return nil, err
	}
	sb, err := s.podVM(p)
	if err != nil {
		return nil, err
	}
	m := &v2stats.Metrics{CPU: &v2stats.CPUStat{}, Memory: &v2stats.MemoryStat{}, Pids: &v2stats.PidsStat{}}
	for _, c := range s.allContainers() {
		if c.pause || c.init.status() != statusRunning {
			continue
		}
		st, err := sb.agent.StatsContainer(ctx, &agent.ContainerRequest{ContainerId: c.id})
		if err != nil {
			if errdefs.IsNotFound(fromAgent(err)) {
				continue // deleted meanwhile
			}
			return nil, fmt.Errorf("stats of %s: %w", c.id, fromAgent(err))
		}
		m.CPU.UsageUsec += st.CpuUsageNs / 1000
		m.CPU.UserUsec += st.CpuUserNs / 1000
		m.CPU.SystemUsec += st.CpuSystemNs / 1000
		m.Memory.Usage += st.MemoryUsageBytes
		m.Pids.Current += st.PidsCurrent
	}
	data, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("encode sandbox metrics: %w", err)
	}
	return &sandboxAPI.SandboxMetricsResponse{Metrics: &types.Metric{
		Timestamp: protobuf.ToTimestamp(time.Now()),
		ID:        p.id,
		Data:      data,
	}}, nil
}

// UpdateSandbox is not supported: a pod's VM grows with its containers'
// limits (Update of the task API). containerd tolerates ErrNotImplemented.
func (s *service) UpdateSandbox(ctx context.Context, r *sandboxAPI.UpdateSandboxRequest) (*sandboxAPI.UpdateSandboxResponse, error) {
	return nil, fmt.Errorf("update sandbox %s: %w", r.SandboxID, errdefs.ErrNotImplemented)
}

// apiPod returns the pod of the sandbox API, nil on the classic path.
func (s *service) apiPod() *podSandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pod
}

// podByID returns the shim's pod if it is sandbox id.
func (s *service) podByID(id string) (*podSandbox, error) {
	p := s.apiPod()
	if p == nil || p.id != id {
		return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	return p, nil
}

// podVM returns the VM of a running pod: its containers run there.
func (s *service) podVM(p *podSandbox) (*sandbox, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != podRunning {
		return nil, fmt.Errorf("sandbox %s is %s: %w", p.id, p.state, errdefs.ErrFailedPrecondition)
	}
	return p.vm, nil
}

func (s *service) allContainers() []*container {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	return cs
}
