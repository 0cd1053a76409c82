package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
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

	mounts := make([]specs.Mount, 0, len(spec.Mounts))
	for i, m := range spec.Mounts {
		if !isBind(&m) {
			mounts = append(mounts, m)
			continue
		}
		guest, hostPaths, err := shareBind(m, hostDir, guestDir, "m"+strconv.Itoa(i))
		targets = append(targets, hostPaths...)
		if err != nil {
			return shared{}, fmt.Errorf("share mount %s: %w", m.Destination, err)
		}
		mounts = append(mounts, guest...)
	}
	spec.Mounts = mounts
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

// shareBind shares the source of bind mount m below hostDir as name, and
// returns the guest's mounts for it, with sources below guestDir, and the
// host mounts it made.
//
// The source is shared alone (a non-recursive bind); a recursive bind
// ("rbind") brings its submounts, each shared on its own and mounted over
// it in the guest, in order, with its host flags: 9p would show the guest
// a recursively shared tree as one file system, which takes the flags of
// the guest's mount, where a plain read-only bind must leave its
// submounts as they are (runc remounts the top mount only). A recursively
// read-only mount ("rro") makes them read-only too. Sharing each submount
// on its own also keeps the host's copies of them off the source's
// directories, which could then not be removed while the container runs.
func shareBind(m specs.Mount, hostDir, guestDir, name string) (guest []specs.Mount, targets []string, _ error) {
	hostPath := filepath.Join(hostDir, name)
	if err := bindShare(m.Source, hostPath); err != nil {
		return nil, nil, err
	}
	targets = append(targets, hostPath)
	src := m.Source
	m.Source = path.Join(guestDir, name)
	guest = append(guest, m)
	if !hasOption(m.Options, "rbind") {
		return guest, targets, nil
	}
	subs, err := submounts(src)
	if err != nil {
		return nil, targets, err
	}
	rro := hasOption(m.Options, "rro")
	for k, sub := range subs {
		subName := name + "." + strconv.Itoa(k)
		hostPath := filepath.Join(hostDir, subName)
		if err := bindShare(sub.Mountpoint, hostPath); err != nil {
			return nil, targets, fmt.Errorf("submount %s: %w", sub.Mountpoint, err)
		}
		targets = append(targets, hostPath)
		rel, err := filepath.Rel(src, sub.Mountpoint)
		if err != nil {
			return nil, targets, err
		}
		opts := submountOptions(m.Options, sub.Options)
		if rro && !hasOption(opts, "ro") {
			opts = append(opts, "ro")
		}
		guest = append(guest, specs.Mount{
			Destination: path.Join(m.Destination, filepath.ToSlash(rel)),
			Type:        "bind",
			Source:      path.Join(guestDir, subName),
			Options:     opts,
		})
	}
	return guest, targets, nil
}

// submounts lists the mounts below dir (resolved), parents first; of
// mounts stacked on one mount point, the top one.
func submounts(dir string) ([]*mountinfo.Info, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	all, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("list submounts of %s: %w", dir, err)
	}
	top := map[string]*mountinfo.Info{}
	var subs []*mountinfo.Info
	for _, mi := range all {
		if mi.Mountpoint == dir {
			continue
		}
		if _, ok := top[mi.Mountpoint]; !ok {
			subs = append(subs, mi)
		}
		top[mi.Mountpoint] = mi // later mounts are on top
	}
	for i, mi := range subs {
		subs[i] = top[mi.Mountpoint]
	}
	sort.SliceStable(subs, func(i, j int) bool {
		return strings.Count(subs[i].Mountpoint, "/") < strings.Count(subs[j].Mountpoint, "/")
	})
	return subs, nil
}

// submountOptions are the guest mount options of a submount shared on its
// own: its own host flags (vfsOptions, from mountinfo) and the propagation
// of the bind mount it is below.
func submountOptions(parent []string, vfsOptions string) []string {
	opts := []string{"bind"}
	for _, o := range parent {
		switch o {
		case "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
			opts = append(opts, o)
		}
	}
	for _, o := range strings.Split(vfsOptions, ",") {
		switch o {
		case "ro", "nosuid", "nodev", "noexec":
			opts = append(opts, o)
		}
	}
	return opts
}

func hasOption(options []string, o string) bool {
	return slices.Contains(options, o)
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

// bindShare bind-mounts src (a file or a directory), without its
// submounts, onto a new target.
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
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
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
