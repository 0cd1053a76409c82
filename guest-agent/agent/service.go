// Package agent implements the guest side of the agent protocol
// (api/agent/v1): it runs OCI containers in the guest with libcontainer and
// forwards their stdio to the host on request.
//
// A binary that uses this package must handle libcontainer's re-execution of
// itself as "<binary> init" (see cmd/scc-agent) and import
// github.com/opencontainers/runc/libcontainer/nsenter.
package agent

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"path"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	// Without it the cgroup manager cannot apply device rules, and every
	// spec has some.
	_ "github.com/opencontainers/cgroups/devices"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	monitorapi "github.com/sccontainers/scc/api/monitor/v1"
	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/internal/forward"
)

// Version is the agent version reported by Ping when Options.Version is
// empty.
const Version = "0.1.0"

// Default locations in the guest.
const (
	DefaultStateDir     = "/run/scc/libcontainer"
	DefaultCgroupParent = "/scc"
	DefaultRootfsDir    = "/run/scc/rootfs"
)

// Reaper coordinates container processes with PID 1's zombie reaper (see
// guest-agent/reaper). Hold keeps the reaper off while libcontainer forks
// children it waits for by pid; Claim keeps it off one pid until release.
type Reaper interface {
	Hold() (release func())
	Claim(pid int) (release func())
}

// Options configures a Service. Zero fields take the defaults above.
type Options struct {
	// StateDir is libcontainer's state directory.
	StateDir string
	// CgroupParent is the cgroup (v2 path, or v1 path under each
	// controller) under which each container gets <CgroupParent>/<id>. The
	// host's cgroupsPath means nothing in the guest and is replaced.
	CgroupParent string
	// RootfsDir holds the mount points of rootfs mounts that name no
	// target.
	RootfsDir string
	// NoPivotRoot makes containers chroot instead of pivot_root, which
	// fails when the guest's own root is the initramfs.
	NoPivotRoot bool
	// Reaper may be nil when the process is not a reaper (tests).
	Reaper Reaper
	// Version is reported by Ping.
	Version string
	// EvidenceSource names the guest's attestation evidence source, as
	// Ping reports it.
	EvidenceSource string
	// MountShared, when set, mounts the host's shared directory. It runs
	// before the first container is created rather than at boot: QEMU
	// cannot snapshot a VM whose guest has a virtio-9p share mounted, and
	// a VM is snapshotted after boot, before any container.
	MountShared func(ctx context.Context) error
	// OpenForward opens the guest's end of the forwarded channel (its
	// virtio-serial port), through which confidential containers pull
	// their images; nil refuses them.
	OpenForward func(ctx context.Context) (io.ReadWriteCloser, error)
	// ImageDir holds the images pulled for confidential containers; it
	// must be in guest memory.
	ImageDir string
	// Monitor is the guest's trusted monitor, which alone reaches the
	// TPM: it gives evidence, binds init data and records restores. Nil
	// when there is none (tests).
	Monitor monitorapi.MonitorService
	// EndForClean, called once the monitor accepted a clean, must make
	// the agent stop taking connections and exit once the host closed the
	// current one (the monitor starts the next agent after the clean).
	// Nil refuses cleans.
	EndForClean func()
}

// Service implements agentapi.AgentService.
type Service struct {
	opts Options

	sharedMu sync.Mutex
	shared   bool // the shared directory is mounted, guarded by sharedMu

	forwardMu sync.Mutex
	forward   *forward.Client // the forwarded channel once opened, guarded by forwardMu

	oom    *oomEvents // OOM kills not yet collected by the host
	ports  ports      // connections forwarded to the host
	sysDir string     // the kernel's /sys/devices/system; tests change it

	keyMu    sync.Mutex
	identity *ecdsa.PrivateKey // the agent's key, made on first use; guarded by keyMu

	imagesMu sync.Mutex
	images   []attest.Image // the images pulled so far, in order; guarded by imagesMu

	mu         sync.Mutex
	containers map[string]*container // by id, guarded by mu
	reserved   map[string]struct{}   // ids being created, guarded by mu
}

var _ agentapi.AgentService = (*Service)(nil)

// New returns a Service with no containers.
func New(opts Options) *Service {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = DefaultCgroupParent
	}
	if opts.RootfsDir == "" {
		opts.RootfsDir = DefaultRootfsDir
	}
	if opts.ImageDir == "" {
		opts.ImageDir = DefaultImageDir
	}
	if opts.Reaper == nil {
		opts.Reaper = noReaper{}
	}
	if opts.Version == "" {
		opts.Version = Version
	}
	return &Service{
		opts:       opts,
		containers: make(map[string]*container),
		reserved:   make(map[string]struct{}),
		oom:        newOOMEvents(),
		ports:      ports{conns: make(map[uint64]*portConn)},
		sysDir:     sysDevicesSystem,
	}
}

// NewServer returns a ttrpc server serving svc. Its interceptor converts
// errdefs errors to gRPC status codes, so the host can match them with
// errdefs again.
func NewServer(svc agentapi.AgentService) (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(intercept))
	if err != nil {
		return nil, fmt.Errorf("new ttrpc server: %w", err)
	}
	agentapi.RegisterAgentService(srv, svc)
	return srv, nil
}

func intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	start := time.Now()
	resp, err := method(ctx, unmarshal)
	entry := log.G(ctx).WithField("method", path.Base(info.FullMethod)).WithField("duration", time.Since(start))
	if err != nil {
		entry.WithError(err).Debug("request failed")
		return resp, errgrpc.ToGRPC(err)
	}
	entry.Trace("request done")
	return resp, nil
}

// Ping reports the agent version and the guest kernel release.
func (s *Service) Ping(ctx context.Context, _ *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	return &agentapi.PingResponse{
		AgentVersion:   s.opts.Version,
		KernelRelease:  unix.ByteSliceToString(uts.Release[:]),
		EvidenceSource: s.opts.EvidenceSource,
	}, nil
}

// container returns the container called id.
func (s *Service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// process returns the init (execID "") or exec process of container cid.
func (s *Service) process(cid, execID string) (*container, *process, error) {
	c, err := s.container(cid)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// reserve claims id for a container being created.
func (s *Service) reserve(id string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[id]; ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	if _, ok := s.reserved[id]; ok {
		return nil, fmt.Errorf("container %q is being created: %w", id, errdefs.ErrAlreadyExists)
	}
	s.reserved[id] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.reserved, id)
	}, nil
}

type noReaper struct{}

func (noReaper) Hold() func()     { return func() {} }
func (noReaper) Claim(int) func() { return func() {} }

// ensureShared mounts the shared directory once; a failure is retried by
// the next request.
func (s *Service) ensureShared(ctx context.Context) error {
	if s.opts.MountShared == nil {
		return nil
	}
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if s.shared {
		return nil
	}
	if err := s.opts.MountShared(ctx); err != nil {
		return fmt.Errorf("mount shared directory: %w", err)
	}
	s.shared = true
	return nil
}
