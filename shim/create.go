package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// sandboxIDAnnotations name the annotations that group containers into one
// sandbox (one VM); the first one present wins.
var sandboxIDAnnotations = []string{
	"io.kubernetes.cri.sandbox-id",
	"io.scc.sandbox-id",
}

// Create boots the sandbox VM if it is not running yet, shares the
// container's rootfs with it and creates the container in the guest.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.ID == "" {
		return nil, fmt.Errorf("create: empty container id: %w", errdefs.ErrInvalidArgument)
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("create %s from checkpoint: %w", r.ID, errdefs.ErrNotImplemented)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(logContainer, r.ID))
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	io := stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	if err := io.validate(); err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	if _, err := s.getContainer(r.ID); err == nil {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	// Check the rootfs before a VM boots for nothing.
	if len(r.Rootfs) == 0 && !isPodSandbox(spec) {
		if _, err := rootfsDir(r.Bundle, spec); err != nil {
			return nil, fmt.Errorf("create %s: %w", r.ID, err)
		}
	}
	configPath, err := runtimeConfigPath(r)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}

	sb, err := s.ensureSandbox(ctx, sandboxID(spec, r.ID), configPath, spec)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	if p := s.apiPod(); p != nil {
		// CRI leaves the pod's /etc files and /dev/shm to a sandboxer.
		p.containerFiles().mountInto(spec)
	}
	if isPodSandbox(spec) {
		return s.createPause(ctx, r, sb, spec)
	}

	if err := writeSandboxState(r.Bundle, sb.dir); err != nil {
		return nil, fmt.Errorf("create %s: record sandbox state: %w", r.ID, err)
	}
	// A confidential container's guest pulls its image: the host's
	// rootfs (containerd's snapshot) is never shown to it.
	var img *agent.GuestImage
	guestPulled := guestPulledRootfs(r.Rootfs)
	if sb.confidential.Enabled {
		var host *hostImage
		if guestPulled {
			h, err := lookupHostImage(ctx, r.ID)
			if err != nil {
				return nil, fmt.Errorf("create %s: %w", r.ID, err)
			}
			host = &h
		}
		if img, err = sb.confidential.guestImage(spec, host); err != nil {
			return nil, fmt.Errorf("create %s: %w", r.ID, err)
		}
		if sb.confidential.LayerCache != "" {
			// Without the cache's disks the guest pulls every layer:
			// slower, never less safe.
			if img.LayerDisks, err = sb.attachLayerDisks(ctx, img); err != nil {
				log.G(ctx).WithError(err).Warn("layer cache: the guest pulls every layer")
			}
		}
	} else if guestPulled {
		return nil, fmt.Errorf("create %s: %w", r.ID, errGuestPullNotConfidential)
	}
	share, err := sb.share(ctx, r.ID, r.Rootfs, r.Bundle, spec, img == nil)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	defer func() {
		if retErr != nil {
			if err := share.unmount(); err != nil {
				log.G(ctx).WithError(err).Warn("unshare rootfs")
			}
		}
	}()
	// podSpec first: it tells the namespaces a pod container joins by path
	// (the pod's), which guestSpec then no longer shows.
	if isPodContainer(spec) {
		podSpec(spec)
	}
	guestSpec(spec)
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("create %s: encode spec: %w", r.ID, err)
	}
	req := &agent.CreateContainerRequest{
		ContainerId: r.ID,
		Spec:        specJSON,
		Stdio:       io.config(),
		Image:       img,
	}
	if img == nil {
		req.Rootfs = &agent.Mount{Source: share.rootfs}
	}
	if _, err := sb.agent.CreateContainer(ctx, req); err != nil {
		return nil, fmt.Errorf("create %s in guest: %w", r.ID, fromAgent(err))
	}
	init := newProcess(r.ID, "", io, nil)
	pio, err := openIO(ctx, sb.agent, r.ID, "", io)
	if err != nil {
		if _, derr := sb.agent.DeleteContainer(ctx, &agent.ContainerRequest{ContainerId: r.ID}); derr != nil {
			log.G(ctx).WithError(derr).Warn("delete container after failed create")
		}
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	init.io = pio

	c := &container{id: r.ID, bundle: r.Bundle, init: init, unmount: share.unmount, execs: map[string]*process{}}
	if spec.Linux != nil {
		c.limits = limitsOf(spec.Linux.Resources)
	}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()

	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{}, nil
}

// readSpec reads and checks the bundle's OCI runtime spec.
func readSpec(bundle string) (*specs.Spec, error) {
	if bundle == "" {
		return nil, fmt.Errorf("empty bundle path: %w", errdefs.ErrInvalidArgument)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("parse OCI spec %s: %v: %w", filepath.Join(bundle, "config.json"), err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("OCI spec has no process: %w", errdefs.ErrInvalidArgument)
	}
	if len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("OCI spec process has no args: %w", errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

func sandboxID(spec *specs.Spec, id string) string {
	for _, a := range sandboxIDAnnotations {
		if v := spec.Annotations[a]; v != "" {
			return v
		}
	}
	return id
}

// runtimeConfigPath returns the config file named in the runtime options
// (containerd's ConfigPath), if any.
func runtimeConfigPath(r *taskAPI.CreateTaskRequest) (string, error) {
	if r.Options == nil || r.Options.GetValue() == nil {
		return "", nil
	}
	var opts runtimeoptions.Options
	if !typeurl.Is(r.Options, &opts) {
		return "", nil
	}
	if err := typeurl.UnmarshalTo(r.Options, &opts); err != nil {
		return "", fmt.Errorf("decode runtime options: %w", err)
	}
	return opts.ConfigPath, nil
}

// guestSpec removes what refers to the host and has no meaning in the guest:
// namespace paths, the host cgroup path, hooks and host security labels.
func guestSpec(spec *specs.Spec) {
	spec.Hooks = nil
	if spec.Process != nil {
		spec.Process.ApparmorProfile = ""
		spec.Process.SelinuxLabel = ""
	}
	if spec.Linux != nil {
		spec.Linux.CgroupsPath = ""
		spec.Linux.MountLabel = ""
		for i := range spec.Linux.Namespaces {
			spec.Linux.Namespaces[i].Path = ""
		}
	}
}

// errMissingRootfs is returned when a container has neither rootfs mounts
// nor a rootfs directory in its bundle.
var errMissingRootfs = errors.New("missing rootfs")

// createPause records a pod's sandbox container: nothing runs in the
// guest for it, and its pid is the VM's.
func (s *service) createPause(ctx context.Context, r *taskAPI.CreateTaskRequest, sb *sandbox, spec *specs.Spec) (*taskAPI.CreateTaskResponse, error) {
	if err := writeSandboxState(r.Bundle, sb.dir); err != nil {
		return nil, fmt.Errorf("create %s: record sandbox state: %w", r.ID, err)
	}
	// The pause process would have held the pod's hostname and sysctls;
	// the guest holds them instead.
	req := &agent.ConfigureSandboxRequest{Hostname: spec.Hostname}
	if spec.Linux != nil {
		req.Sysctls = spec.Linux.Sysctl
	}
	if _, err := sb.agent.ConfigureSandbox(ctx, req); err != nil {
		return nil, fmt.Errorf("create %s: configure pod: %w", r.ID, fromAgent(err))
	}
	init := newProcess(r.ID, "", stdio{}, nil)
	c := &container{id: r.ID, bundle: r.Bundle, init: init, pause: true, unmount: func() error { return nil }, execs: map[string]*process{}}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	s.send(&eventstypes.TaskCreate{ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: uint32(sb.vm.Pid())})
	return &taskAPI.CreateTaskResponse{Pid: uint32(sb.vm.Pid())}, nil
}
