package monitor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/go-dmverity/pkg/dm"
	"golang.org/x/sys/unix"
)

// The kernel state a clean resets besides processes, files and cgroups:
// what a privileged tenant can leave behind in the kernel for the next
// one, and the caches that hold its data. docs/monitor.md lists what it
// does not reset.

// removeBlockDevices removes every device-mapper device (the dm-verity
// devices of confidential containers' layer disks) and detaches every
// loop device: nothing of the guest's own uses them.
func removeBlockDevices(sysBlock string) error {
	var errs []error
	names, _ := filepath.Glob(filepath.Join(sysBlock, "dm-*", "dm", "name"))
	if len(names) > 0 {
		c, err := dm.Open()
		if err != nil {
			return fmt.Errorf("remove dm devices: %w", err)
		}
		defer c.Close()
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				continue // gone meanwhile
			}
			name := strings.TrimSpace(string(b))
			if err := c.RemoveDevice(name); err != nil {
				errs = append(errs, fmt.Errorf("remove dm device %s: %w", name, err))
			}
		}
	}
	backings, _ := filepath.Glob(filepath.Join(sysBlock, "loop*", "loop", "backing_file"))
	for _, b := range backings {
		dev := filepath.Join("/dev", filepath.Base(filepath.Dir(filepath.Dir(b))))
		if err := detachLoop(dev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func detachLoop(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	return nil
}

// removeCgroups removes the cgroup at dir and every cgroup below it,
// deepest first. Cgroups of processes that just died may take a moment
// to empty.
func removeCgroups(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroups: %w", err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := unix.Rmdir(dirs[i])
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// binfmtDir is where the binfmt_misc file system is mounted for the
// clean: a registered interpreter, held open by the kernel, would run the
// next tenant's programs of its format.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// clearBinfmt removes every binfmt_misc interpreter. A kernel without
// binfmt_misc (not built in and not loaded, and no tenant can load it)
// has none.
func clearBinfmt() error {
	err := unix.Mount("binfmt_misc", binfmtDir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount binfmt_misc: %w", err)
	}
	defer unix.Unmount(binfmtDir, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(binfmtDir, "status"), []byte("-1"), 0); err != nil {
		return fmt.Errorf("clear binfmt_misc: %w", err)
	}
	return nil
}

// tracingDir is where tracefs is mounted for the clean.
const tracingDir = "/sys/kernel/tracing"

// resetTracing turns off whatever a tenant set up in the kernel's
// tracer, which outlives the tenant and could record the next one
// (kprobes on its system calls, say): probes, events, tracers, instances,
// and the trace buffer it filled.
func resetTracing() error {
	err := unix.Mount("tracefs", tracingDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
		return nil // no tracer in this kernel
	}
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount tracefs: %w", err)
	}
	defer unix.Unmount(tracingDir, unix.MNT_DETACH)
	var errs []error
	write := func(name, v string) {
		p := filepath.Join(tracingDir, name)
		if _, err := os.Stat(p); err != nil {
			return // not in this kernel
		}
		// O_TRUNC empties lists (probes, filters, the buffer).
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			errs = append(errs, fmt.Errorf("reset tracing: %s: %w", name, err))
		}
	}
	instances, _ := os.ReadDir(filepath.Join(tracingDir, "instances"))
	for _, i := range instances {
		if err := unix.Rmdir(filepath.Join(tracingDir, "instances", i.Name())); err != nil {
			errs = append(errs, fmt.Errorf("reset tracing: remove instance %s: %w", i.Name(), err))
		}
	}
	write("current_tracer", "nop")
	write("events/enable", "0")
	write("set_event", "")
	// Probes can be removed only once their events are off.
	write("kprobe_events", "")
	write("uprobe_events", "")
	write("dynamic_events", "")
	write("set_ftrace_filter", "")
	write("set_ftrace_notrace", "")
	write("set_graph_function", "")
	write("set_event_pid", "")
	write("set_ftrace_pid", "")
	write("trace", "")
	write("tracing_on", "1")
	return errors.Join(errs...)
}

// clearKeyrings empties root's user and user session keyrings, which
// outlive root's processes: a tenant running as root could leave keys
// there for the next.
func clearKeyrings() error {
	var errs []error
	for _, k := range []int{unix.KEY_SPEC_USER_KEYRING, unix.KEY_SPEC_USER_SESSION_KEYRING} {
		if _, err := unix.KeyctlInt(unix.KEYCTL_CLEAR, k, 0, 0, 0); err != nil && !errors.Is(err, unix.ENOKEY) {
			errs = append(errs, fmt.Errorf("clear keyring %d: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// dropCaches frees the page, dentry and inode caches, which keep the
// contents and names of files the tenant used, and compacts memory. With
// init_on_free=1 every page freed is zeroed.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	if err := os.WriteFile("/proc/sys/vm/compact_memory", []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact memory: %w", err)
	}
	return nil
}
