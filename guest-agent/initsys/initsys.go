// Package initsys does what an init system does in the guest before the
// agent serves: the agent is PID 1, booted from an initramfs with no other
// userspace.
package initsys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/internal/kmod"
)

// The 9p share the host exports with QEMU's -fsdev/-device
// virtio-9p-pci,mount_tag=scc. The host puts each container's rootfs at
// <SharedDir>/<container-id>/rootfs. msize is the most the virtio
// transport takes (512000); asking for more only makes the kernel clamp it
// and say so on the console.
const (
	SharedTag     = "scc"
	SharedDir     = "/run/scc/shared"
	SharedOptions = "trans=virtio,version=9p2000.L,msize=512000,cache=none"
)

// ModulesList lists the kernel modules to load at boot, relative to "/".
const ModulesList = "/etc/scc/modules"

// controllers are enabled for child cgroups of the root, so containers'
// cgroups can use them; ones the kernel lacks are skipped.
var controllers = []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// baseMounts is the guest's filesystem layout, in mount order: /dev before
// what lives in it, /sys before cgroup2.
var baseMounts = []mount{
	{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"shm", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777"},
	{"mqueue", "/dev/mqueue", "mqueue", nosuid | nodev | noexec, ""},
	{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
	{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid | nodev | noexec, "nsdelegate"},
	{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777"},
}

// devLinks are the conventional /dev symlinks devtmpfs does not make.
var devLinks = []struct{ name, target string }{
	{"ptmx", "pts/ptmx"}, // the devpts instance mounted above, not the kernel's initial one
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// Setup mounts the base filesystems, points stdio at the console and
// enables cgroup controllers. It must run first thing in PID 1.
func Setup(ctx context.Context) error {
	for _, m := range baseMounts {
		if err := mountOne(m); err != nil {
			return err
		}
	}
	if err := consoleStdio(); err != nil {
		return err
	}
	if err := makeDevLinks("/dev"); err != nil {
		return err
	}
	return EnableControllers(ctx, CgroupRoot)
}

// CgroupRoot is where Setup mounts the cgroup2 hierarchy.
const CgroupRoot = "/sys/fs/cgroup"

// SetHostname sets the guest's hostname.
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname: %w", os.NewSyscallError("sethostname", err))
	}
	return nil
}

func mountOne(m mount) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if errors.Is(err, unix.EBUSY) {
		return nil // mounted already, by the kernel (devtmpfs.mount=1)
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// consoleStdio makes stdout and stderr the console, which the host captures
// into a log file, and stdin /dev/null. The kernel may have started PID 1
// with no usable stdio.
func consoleStdio() error {
	console, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open console: %w", err)
	}
	defer console.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer null.Close()
	for fd, f := range []*os.File{null, console, console} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return fmt.Errorf("redirect fd %d: %w", fd, os.NewSyscallError("dup3", err))
		}
	}
	return nil
}

// makeDevLinks creates devLinks in dev, replacing what is there (devtmpfs
// has a /dev/ptmx node for the initial devpts instance).
func makeDevLinks(dev string) error {
	for _, l := range devLinks {
		p := filepath.Join(dev, l.name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", p, err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	return nil
}

// EnableControllers delegates the available controllers in controllers
// to the children of the cgroup at dir, which must hold no process.
func EnableControllers(ctx context.Context, dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup controllers: %w", err)
	}
	available := strings.Fields(string(data))
	control, err := os.OpenFile(filepath.Join(dir, "cgroup.subtree_control"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("enable cgroup controllers: %w", err)
	}
	defer control.Close()
	for _, c := range controllers {
		if !slices.Contains(available, c) {
			log.G(ctx).WithField("controller", c).Debug("cgroup controller not available")
			continue
		}
		// One write per controller: a write naming several fails as a
		// whole if one of them cannot be enabled.
		if _, err := control.WriteString("+" + c + "\n"); err != nil {
			return fmt.Errorf("enable cgroup controller %s: %w", c, err)
		}
	}
	return nil
}

// LoadModules loads the kernel modules the guest image lists in
// ModulesList (virtio transports, 9p, ...).
func LoadModules(ctx context.Context) error {
	if err := kmod.LoadList(ctx, "/", ModulesList); err != nil {
		return fmt.Errorf("load kernel modules: %w", err)
	}
	return nil
}

// MountConfigfs mounts configfs, where the kernel's TEE report interface
// (configfs-tsm) lives. configfs is a module: call it after LoadModules.
func MountConfigfs() error {
	return mountOne(mount{"configfs", "/sys/kernel/config", "configfs", nosuid | nodev | noexec, ""})
}

// MountShared mounts the host's 9p share at SharedDir.
//
// Not nosuid: the containers' rootfs are below it, and setuid programs in
// images (su, ping, ...) must work as with runc; a container that must not
// gain privileges says so with no_new_privileges.
func MountShared(ctx context.Context) error {
	return mountOne(mount{SharedTag, SharedDir, "9p", nodev, SharedOptions})
}

// RootIsInitramfs reports whether "/" is the kernel's initial rootfs, where
// pivot_root(2) fails, so containers must chroot instead.
func RootIsInitramfs() (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	return rootFSType(string(data)) == "rootfs", nil
}

// rootFSType returns the filesystem type of the mount at "/" in mountinfo
// text, the last one listed if several are stacked.
func rootFSType(mountinfo string) string {
	var fstype string
	for _, line := range strings.Split(mountinfo, "\n") {
		// id parent major:minor root mountpoint opts [optional...] - type source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		if t := strings.Fields(post); len(t) > 0 {
			fstype = t[0]
		}
	}
	return fstype
}

// CmdlineValue returns the value of key=value in the kernel command line
// text, and whether key is there.
func CmdlineValue(cmdline, key string) (string, bool) {
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

// LoopbackUp brings up the guest's loopback interface: the containers of a
// pod share the guest's network namespace, and reach each other on it.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// Kernel command line parameters of the guest's init.
const (
	ParamLogLevel = "scc.log"      // logrus level, "info" by default
	ParamHostname = "scc.hostname" // guest hostname, DefaultHostname by default
)

// DefaultHostname is the guest's hostname unless scc.hostname says
// otherwise.
const DefaultHostname = "scc"

// ConfigureLogging sets the log level from the kernel command line
// (scc.log). Logs go to stderr, which is the console in the guest.
func ConfigureLogging(cmdline string) {
	logrus.SetOutput(os.Stderr)
	// The console is a terminal, but the host writes it to a file:
	// no colours.
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: log.RFC3339NanoFixed, DisableColors: true})
	level, ok := CmdlineValue(cmdline, ParamLogLevel)
	if !ok {
		level = "info"
	}
	if err := log.SetLevel(level); err != nil {
		log.L.WithError(err).Warn("bad log level")
	}
}
