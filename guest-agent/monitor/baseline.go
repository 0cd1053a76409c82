package monitor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/containerd/log"
)

// scratchMounts are the guest's writable file systems that the agent's
// mount namespace shares with the monitor's: the namespace is a copy of
// the monitor's mounts, not of the file systems, so what a tenant writes
// there (from a privileged container in the agent's namespaces, say)
// outlives it. "/" is the tmpfs the initramfs moved to.
var scratchMounts = []string{"/", "/run", "/tmp", "/dev/shm", "/dev/mqueue", "/dev"}

// sysctlDir holds the kernel's sysctls.
const sysctlDir = "/proc/sys"

// volatileSysctls change on their own, or belong to namespaces the
// agent has of its own (the monitor's are untouched): a clean neither
// compares nor restores them.
var volatileSysctls = []string{
	"kernel/ns_last_pid", "kernel/perf_event_max_sample_rate", "kernel/tainted",
	"kernel/random/", "kernel/hostname", "kernel/domainname",
	"kernel/sem", "kernel/shm", "kernel/msg", "fs/mqueue/",
	"net/", "user/", "vm/stat_refresh", "fs/binfmt_misc/",
}

// baseline is the guest as the monitor starts its first agent: what each
// clean returns it to or checks it against.
type baseline struct {
	// Files are the entries of scratchMounts, by path.
	Files map[string]fileState
	// Mounts are the monitor's mounts (mount point and type).
	Mounts []string
	// Sysctls are the writable kernel settings, by path below sysctlDir.
	Sysctls map[string][]byte
}

// fileState is what a clean compares of a file the guest had at the
// baseline. Regular files of "/" are compared through the initramfs
// digest instead.
type fileState struct {
	Mode     fs.FileMode
	Perm     uint32 // the mode as stat(2) has it, for mknod and chmod
	UID, GID uint32
	Rdev     uint64   // a device node's
	Target   string   // a symbolic link's
	Digest   [32]byte // a regular file's, outside "/"
}

// takeBaseline records the guest's scratch file systems, mounts and
// sysctls.
func takeBaseline(ctx context.Context) (*baseline, error) {
	b := &baseline{Files: map[string]fileState{}}
	err := walkScratch(func(root, p string, fi fs.FileInfo) error {
		st, err := stateOf(root, p, fi)
		if err != nil {
			return err
		}
		b.Files[p] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if b.Mounts, err = mountPoints(); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if b.Sysctls, err = readSysctls(); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	log.G(ctx).WithField("files", len(b.Files)).WithField("sysctls", len(b.Sysctls)).Debug("baseline taken")
	return b, nil
}

// walkScratch calls fn for every entry of the scratch file systems, not
// crossing into other mounts, parents before children.
func walkScratch(fn func(root, path string, fi fs.FileInfo) error) error {
	for _, root := range scratchMounts {
		rfi, err := os.Lstat(root)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		dev := rfi.Sys().(*syscall.Stat_t).Dev
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed meanwhile
				}
				return err
			}
			fi, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if fi.Sys().(*syscall.Stat_t).Dev != dev {
				if d.IsDir() {
					return filepath.SkipDir // another mount
				}
				return nil
			}
			return fn(root, p, fi)
		})
		if err != nil {
			return fmt.Errorf("walk %s: %w", root, err)
		}
	}
	return nil
}

func stateOf(root, p string, fi fs.FileInfo) (fileState, error) {
	sys := fi.Sys().(*syscall.Stat_t)
	st := fileState{Mode: fi.Mode(), Perm: sys.Mode, UID: sys.Uid, GID: sys.Gid}
	if isDevice(fi.Mode()) {
		st.Rdev = sys.Rdev
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return st, err
		}
		st.Target = t
	case fi.Mode().IsRegular() && root != "/":
		d, err := fileDigest(p)
		if err != nil {
			return st, err
		}
		st.Digest = d
	}
	return st, nil
}

// isDevice reports a device node: in /dev the kernel makes and removes
// them as devices come and go (the ports a clean replaces among them).
func isDevice(m fs.FileMode) bool { return m&(fs.ModeDevice|fs.ModeCharDevice) != 0 }

// wipe returns the scratch file systems to the baseline: it removes every
// entry the baseline does not have (device nodes the kernel added to /dev
// aside) and puts back the device nodes of /dev a tenant removed or
// changed. It fails on any other entry that changed or went missing: the
// clean cannot undo that. The ports a clean replaces must be back first,
// their device nodes with them.
func (b *baseline) wipe(ctx context.Context) error {
	var extra, changed []string
	var fixed []string
	seen := map[string]bool{}
	err := walkScratch(func(root, p string, fi fs.FileInfo) error {
		seen[p] = true
		want, ok := b.Files[p]
		if !ok {
			if !(root == "/dev" && isDevice(fi.Mode())) {
				extra = append(extra, p)
			}
			return nil
		}
		got, err := stateOf(root, p, fi)
		if err != nil {
			return err
		}
		switch {
		case got == want:
		case root == "/dev" && isDevice(want.Mode):
			if err := restoreNode(p, got, want); err != nil {
				return err
			}
			fixed = append(fixed, p)
		default:
			changed = append(changed, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p, want := range b.Files {
		if seen[p] {
			continue
		}
		if strings.HasPrefix(p, "/dev/") && isDevice(want.Mode) {
			if err := restoreNode(p, fileState{}, want); err != nil {
				return err
			}
			fixed = append(fixed, p)
			continue
		}
		changed = append(changed, p+" (removed)")
	}
	tops := map[string]bool{}
	for _, p := range extra {
		tops[p] = true
	}
	removed := 0
	var errs []error
	for _, p := range extra {
		if under(p, tops) {
			continue // removed with the extra directory above it
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(changed) > 0 {
		sort.Strings(changed)
		errs = append(errs, fmt.Errorf("changed since the first agent started: %s", strings.Join(changed, ", ")))
	}
	log.G(ctx).WithField("removed", removed).WithField("device_nodes_restored", fixed).Info("scratch file systems wiped")
	return errors.Join(errs...)
}

// restoreNode makes the device node at p what want says: the same device,
// permissions and owner.
func restoreNode(p string, got, want fileState) error {
	if got.Mode.Type() != want.Mode.Type() || got.Rdev != want.Rdev {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("restore device node %s: %w", p, err)
		}
		if err := syscall.Mknod(p, want.Perm, int(want.Rdev)); err != nil {
			return fmt.Errorf("restore device node %s: %w", p, err)
		}
	}
	if err := os.Chown(p, int(want.UID), int(want.GID)); err != nil {
		return fmt.Errorf("restore device node %s: %w", p, err)
	}
	if err := syscall.Chmod(p, want.Perm&0o7777); err != nil {
		return fmt.Errorf("restore device node %s: %w", p, err)
	}
	return nil
}

// under reports whether p lies below a directory of dirs.
func under(p string, dirs map[string]bool) bool {
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		if dirs[d] {
			return true
		}
	}
	return false
}

// checkMounts fails when the monitor's mounts differ from the baseline's:
// nothing of a tenant may be mounted where the monitor and the next agent
// see it.
func (b *baseline) checkMounts() error {
	now, err := mountPoints()
	if err != nil {
		return err
	}
	if strings.Join(now, "\n") != strings.Join(b.Mounts, "\n") {
		return fmt.Errorf("the monitor's mounts changed: %v, were %v", now, b.Mounts)
	}
	return nil
}

// mountPoints lists the calling process's mounts as "point type", sorted.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - type source super
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, f[4]+" "+f[sep+1])
	}
	sort.Strings(out)
	return out, sc.Err()
}

// readSysctls reads every sysctl that is readable and writable and not
// volatile.
func readSysctls() (map[string][]byte, error) {
	vals := map[string][]byte{}
	err := filepath.WalkDir(sysctlDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a directory that cannot be read holds nothing to compare
		}
		rel := strings.TrimPrefix(p, sysctlDir+"/")
		if volatileSysctl(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.Mode().Perm()&0o600 != 0o600 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // some are readable only in some states
		}
		vals[rel] = b
		return nil
	})
	return vals, err
}

// sysctlFill is longer than any string setting's buffer: the kernel
// keeps what fits.
const sysctlFill = 4095

// numeric reports whether a sysctl's value is numbers only.
func numeric(v []byte) bool {
	digits := false
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == ' ' || c == '\t' || c == '\n' || c == '-':
		default:
			return false
		}
	}
	return digits
}

// volatileSysctl reports whether the sysctl (or directory) at rel, below
// sysctlDir, is one of volatileSysctls or below one.
func volatileSysctl(rel string) bool {
	for _, v := range volatileSysctls {
		if strings.HasPrefix(rel+"/", v) {
			return true
		}
	}
	return false
}

// restoreSysctls writes back every sysctl a tenant changed. It fails on
// one it cannot restore (some settings only go one way, such as
// kernel.modules_disabled).
func (b *baseline) restoreSysctls(ctx context.Context) error {
	now, err := readSysctls()
	if err != nil {
		return err
	}
	var restored []string
	var errs []error
	for name, want := range b.Sysctls {
		got, ok := now[name]
		if !ok {
			continue
		}
		// A string setting lives in a kernel buffer that a shorter value
		// only partly overwrites: what a tenant wrote there may be left
		// behind the value, even one it set back. Filling the buffer
		// first overwrites it.
		scrub := !numeric(want)
		if !scrub && bytes.Equal(got, want) {
			continue
		}
		p := filepath.Join(sysctlDir, name)
		if scrub {
			_ = os.WriteFile(p, bytes.Repeat([]byte{'x'}, sysctlFill), 0) // may be refused
		}
		if err := os.WriteFile(p, want, 0); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s: %w", name, err))
			continue
		}
		if again, err := os.ReadFile(p); err != nil || !bytes.Equal(again, want) {
			errs = append(errs, fmt.Errorf("restore sysctl %s: still %q, want %q", name, again, want))
			continue
		}
		if !bytes.Equal(got, want) {
			restored = append(restored, name)
		}
	}
	if len(restored) > 0 {
		log.G(ctx).WithField("sysctls", restored).Info("sysctls restored")
	}
	return errors.Join(errs...)
}
