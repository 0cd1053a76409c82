package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/pull"
)

// CreateContainer creates a container and forks its init process, which
// waits for StartContainer before it runs the user's program.
func (s *Service) CreateContainer(ctx context.Context, req *agentapi.CreateContainerRequest) (*emptypb.Empty, error) {
	id := req.GetContainerId()
	if err := validateID("container", id); err != nil {
		return nil, err
	}
	spec, err := parseSpec(req.GetSpec())
	if err != nil {
		return nil, err
	}
	if err := checkImage(req); err != nil {
		return nil, err
	}
	if err := checkTerminal(spec.Process, req.GetStdio()); err != nil {
		return nil, err
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil && !seccomp.Enabled {
		// Running the container without the filter it asks for would
		// silently weaken it.
		return nil, fmt.Errorf("spec asks for seccomp but the agent is built without it: %w", errdefs.ErrNotImplemented)
	}
	if err := s.ensureShared(ctx); err != nil {
		return nil, err
	}
	release, err := s.reserve(id)
	if err != nil {
		return nil, err
	}
	defer release()

	ctx = log.WithLogger(ctx, log.G(ctx).WithField(fieldContainer, id))
	rootfs := req.GetRootfs()
	var image *pull.Image
	if img := req.GetImage(); img != nil {
		if rootfs, image, err = s.pullRootfs(ctx, id, img); err != nil {
			return nil, err
		}
	}
	c, err := s.create(ctx, id, spec, rootfs, req.GetStdio(), req.GetImage().GetLookupGroups())
	if err != nil {
		if image != nil {
			removeImage(ctx, image)
		}
		return nil, err
	}
	c.image = image
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// create makes the container on rootfs. lookupGroups completes the
// process's user from the rootfs's account files (lookupGroups).
func (s *Service) create(ctx context.Context, id string, spec *specs.Spec, rootfs *agentapi.Mount, stdio *agentapi.StdioConfig, lookup bool) (_ *container, retErr error) {
	var undo cleanup
	defer func() {
		if retErr != nil {
			undo.run()
		}
	}()

	root, mounted, err := s.mountRootfs(id, rootfs)
	if err != nil {
		return nil, err
	}
	if mounted {
		undo.add(func() { unmountRootfs(ctx, root) })
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, invalid("rootfs %q is not a directory in the guest", root)
	}
	if lookup {
		if err := lookupGroups(root, &spec.Process.User); err != nil {
			return nil, err
		}
		log.G(ctx).WithField("uid", spec.Process.User.UID).WithField("gid", spec.Process.User.GID).
			WithField("groups", spec.Process.User.AdditionalGids).Debug("user's groups from the image")
	}

	s.adaptSpec(ctx, id, spec, root)
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		NoPivotRoot: s.opts.NoPivotRoot,
		Spec:        spec,
	})
	if err != nil {
		return nil, invalid("convert spec: %v", err)
	}
	lc, err := libcontainer.Create(s.opts.StateDir, id, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, fmt.Errorf("libcontainer state of %s: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	undo.add(func() {
		if err := lc.Destroy(); err != nil {
			log.G(ctx).WithError(err).Warn("destroy container after failed create")
		}
	})

	lp, err := newLibcontainerProcess(spec.Process, true)
	if err != nil {
		return nil, err
	}
	uid, err := cfg.HostRootUID()
	if err != nil {
		return nil, invalid("root uid: %v", err)
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return nil, invalid("root gid: %v", err)
	}
	c := &container{
		id:     id,
		lc:     lc,
		spec:   spec,
		status: statusCreated,
		execs:  make(map[string]*process),
	}
	if mounted {
		c.rootfsMount = root
	}
	p, err := newProcess(c.what(), lp, stdio, uid, gid)
	if err != nil {
		return nil, err
	}
	undo.add(p.release)
	c.init = p

	hold := s.opts.Reaper.Hold()
	if err := lc.Start(lp); err != nil {
		hold()
		p.closeChildFiles()
		return nil, fmt.Errorf("start init of container %s: %w", id, err)
	}
	pid, err := lp.Pid()
	if err != nil {
		hold()
		return nil, fmt.Errorf("pid of init of container %s: %w", id, err)
	}
	claim := s.opts.Reaper.Claim(pid)
	hold()
	bg := context.WithoutCancel(ctx)
	go p.wait(claim, func() { c.initExited(bg) })
	go s.watchOOM(bg, id, spec.Linux.CgroupsPath)

	if err := p.started(pid); err != nil {
		return nil, err
	}
	return c, nil
}

// adaptSpec rewrites the parts of a host-made spec that name host things.
func (s *Service) adaptSpec(ctx context.Context, id string, spec *specs.Spec, root string) {
	if spec.Root == nil {
		spec.Root = &specs.Root{}
	}
	spec.Root.Path = root
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	spec.Linux.CgroupsPath = path.Join(s.opts.CgroupParent, id)
	if spec.Hooks != nil {
		// OCI hooks name programs on the host, which the guest does not
		// have; the host runs what it needs itself.
		log.G(ctx).Warn("ignoring OCI hooks: they name host programs")
		spec.Hooks = nil
	}
}

// mountRootfs returns the guest directory to use as the container's root.
// A rootfs without a type is a directory already in the guest (in the
// shared directory); one with a type is mounted first, at its target or
// under RootfsDir.
func (s *Service) mountRootfs(id string, m *agentapi.Mount) (root string, mounted bool, err error) {
	if m.GetType() == "" {
		return filepath.Clean(m.GetSource()), false, nil
	}
	target := m.GetTarget()
	if target == "" {
		target = filepath.Join(s.opts.RootfsDir, id)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", false, fmt.Errorf("rootfs mount point: %w", err)
	}
	flags, data := mountFlags(m.GetOptions())
	if err := unix.Mount(m.GetSource(), target, m.GetType(), flags, data); err != nil {
		return "", false, fmt.Errorf("mount rootfs %s (%s) on %s: %w", m.GetSource(), m.GetType(), target, err)
	}
	return target, true, nil
}

func unmountRootfs(ctx context.Context, target string) {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		log.G(ctx).WithError(err).WithField("target", target).Warn("unmount rootfs")
		return
	}
	if err := os.Remove(target); err != nil {
		log.G(ctx).WithError(err).WithField("target", target).Debug("remove rootfs mount point")
	}
}

var mountFlagNames = map[string]uintptr{
	"ro":         unix.MS_RDONLY,
	"nosuid":     unix.MS_NOSUID,
	"nodev":      unix.MS_NODEV,
	"noexec":     unix.MS_NOEXEC,
	"sync":       unix.MS_SYNCHRONOUS,
	"dirsync":    unix.MS_DIRSYNC,
	"noatime":    unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME,
	"relatime":   unix.MS_RELATIME,
	"bind":       unix.MS_BIND,
	"rbind":      unix.MS_BIND | unix.MS_REC,
}

// mountFlags splits mount(8)-style options into mount(2) flags and the
// filesystem's own data string.
func mountFlags(options []string) (uintptr, string) {
	var (
		flags uintptr
		data  []string
	)
	for _, o := range options {
		switch f, ok := mountFlagNames[o]; {
		case ok:
			flags |= f
		case o == "rw" || o == "defaults":
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// cleanup runs undo steps in reverse order, for multi-step setup that must
// not leak on failure.
type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }

func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// removeImage removes a pulled image; its rootfs must be unmounted.
func removeImage(ctx context.Context, img *pull.Image) {
	if err := img.Close(); err != nil {
		log.G(ctx).WithError(err).WithField("dir", img.Dir).Warn("remove pulled image")
	}
}
