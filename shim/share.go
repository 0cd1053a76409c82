package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// shared is what the host exports to the guest for one container.
type shared struct {
	rootfs  string // guest path of the rootfs
	unmount func() error
}

// share mounts the container's rootfs, and the sources of its bind mounts,
// below the sandbox's shared directory, which the guest sees over
// virtio-9p, and rewrites the spec's bind mount sources to guest paths.
// Without hostRootfs (a confidential container, whose guest pulls its
// image) the rootfs is not shared.
func (sb *sandbox) share(ctx context.Context, id string, rootfs []*types.Mount, bundle string, spec *specs.Spec, hostRootfs bool) (_ shared, retErr error) {
	hostDir := filepath.Join(sb.sharedDir, id)
	guestDir := path.Join(agent.GuestSharedDir, id)
	if err := os.Mkdir(hostDir, 0o700); err != nil {
		return shared{}, fmt.Errorf("share rootfs: %w", err)
	}
	var targets []string // mounted, in mount order
	unmount := func() error {
		var errs []error
		for i := len(targets) - 1; i >= 0; i-- {
			if err := mount.UnmountAll(targets[i], unix.MNT_DETACH); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(hostDir); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	defer func() {
		if retErr != nil {
			if err := unmount(); err != nil {
				log.G(ctx).WithError(err).Warn("undo rootfs share")
			}
		}
	}()

	if hostRootfs {
		if err := shareRootfs(filepath.Join(hostDir, "rootfs"), rootfs, bundle, spec); err != nil {
			return shared{}, err
		}
		targets = append(targets, filepath.Join(hostDir, "rootfs"))
	}

	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(m) {
			continue
		}
		name := "m" + strconv.Itoa(i)
		hostPath := filepath.Join(hostDir, name)
		if err := bindShare(m.Source, hostPath); err != nil {
			return shared{}, fmt.Errorf("share mount %s: %w", m.Destination, err)
		}
		targets = append(targets, hostPath)
		m.Source = path.Join(guestDir, name)
	}
	sh := shared{unmount: unmount}
	if hostRootfs {
		sh.rootfs = path.Join(guestDir, "rootfs")
	}
	return sh, nil
}

// shareRootfs mounts the rootfs at target: containerd's mounts, or a bind
// of the bundle's rootfs directory.
func shareRootfs(target string, rootfs []*types.Mount, bundle string, spec *specs.Spec) error {
	if err := os.Mkdir(target, 0o755); err != nil {
		return fmt.Errorf("share rootfs: %w", err)
	}
	if len(rootfs) > 0 {
		if err := mount.All(mount.FromProto(rootfs), target); err != nil {
			return fmt.Errorf("mount rootfs: %w", err)
		}
		return nil
	}
	src, err := rootfsDir(bundle, spec)
	if err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", src, err)
	}
	return nil
}

func isBind(m *specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// bindShare bind-mounts src (a file or a directory) onto a new target.
func bindShare(src, target string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// rootfsDir returns the directory that is the rootfs of a container that
// has no rootfs mounts: the spec's root.path, relative to the bundle.
func rootfsDir(bundle string, spec *specs.Spec) (string, error) {
	src := filepath.Join(bundle, "rootfs")
	if spec.Root != nil && spec.Root.Path != "" {
		src = spec.Root.Path
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w: no rootfs mounts and %s is not a directory: %w", errMissingRootfs, src, errdefs.ErrInvalidArgument)
	}
	return src, nil
}
