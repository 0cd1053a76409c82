// Package nodeinstall installs scc on a node and removes it again: the
// shim, the scc tool, the guest image, a default shim configuration, and
// the scc runtime handler in containerd's config. What install adds is
// recorded, so uninstall removes exactly that and gives back what it
// replaced. It works on a host root mounted anywhere (/host in the
// DaemonSet) and never restarts a service.
package nodeinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/log"

	"github.com/sccontainers/scc/snapshotter"
	"github.com/sccontainers/scc/vmm/image"
)

// Binary names.
const (
	ShimBinary = "containerd-shim-scc-v2"
	ToolBinary = "scc"
)

// Default host paths.
const (
	DefaultBinDir           = "/usr/local/bin"
	DefaultGuestDir         = "/var/lib/scc/guest"
	DefaultConfigPath       = "/etc/scc/config.toml"
	DefaultContainerdConfig = "/etc/containerd/config.toml"
	DefaultStatePath        = "/var/lib/scc/install-state.json"
)

// Options say where install takes its files from and where it puts them.
// Destinations are host paths, resolved inside Root.
type Options struct {
	// Root is the host's root directory: "/" on the host itself, /host in
	// the DaemonSet's container.
	Root string
	// BinSource holds containerd-shim-scc-v2 and scc (install only).
	BinSource string
	// GuestSource holds the guest image: manifest.json and the kernel and
	// initrd it names (install only).
	GuestSource string

	BinDir           string
	GuestDir         string
	ConfigPath       string // the shim's config.toml
	ContainerdConfig string
	// ContainerdConfigVersion is the version of a containerd config that
	// install creates (or that is empty): 2 (default) or 3. An existing
	// config keeps its own.
	ContainerdConfigVersion int
	StatePath               string
	// ConfidentialConfig, if set, is the host path of the shim
	// configuration of a confidential runtime handler
	// (ConfidentialRuntimeName), which the administrator writes: it must
	// make every container confidential and say where the registry and
	// the key broker are. Install then also adds scc's snapshotter to
	// containerd and a systemd unit that runs it (SnapshotterUnit).
	ConfidentialConfig string
	// Sandboxer is the scc handler's sandbox controller (see
	// RuntimeOptions.Sandboxer): "" for CRI's default.
	Sandboxer string
}

// SnapshotterUnit is the host path of the systemd unit of scc's
// snapshotter, which install writes with a confidential handler.
const SnapshotterUnit = "/etc/systemd/system/scc-snapshotter.service"

func (o Options) withDefaults() (Options, error) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Root, "/")
	def(&o.BinDir, DefaultBinDir)
	def(&o.GuestDir, DefaultGuestDir)
	def(&o.ConfigPath, DefaultConfigPath)
	def(&o.ContainerdConfig, DefaultContainerdConfig)
	def(&o.StatePath, DefaultStatePath)
	if !filepath.IsAbs(o.Root) {
		return o, fmt.Errorf("root %q is not an absolute path", o.Root)
	}
	fi, err := os.Stat(o.Root)
	if err != nil {
		return o, fmt.Errorf("root: %w", err)
	}
	if !fi.IsDir() {
		return o, fmt.Errorf("root %s is not a directory", o.Root)
	}
	for _, p := range []string{o.BinDir, o.GuestDir, o.ConfigPath, o.ContainerdConfig, o.StatePath} {
		if !filepath.IsAbs(p) {
			return o, fmt.Errorf("host path %q is not absolute", p)
		}
	}
	if o.ConfidentialConfig != "" {
		if p := o.ConfidentialConfig; !filepath.IsAbs(p) {
			return o, fmt.Errorf("host path %q is not absolute", p)
		}
	}
	return o, nil
}

// Report tells what install or uninstall did.
type Report struct {
	// Changed lists what was written, replaced, restored or removed.
	Changed []string
	// Notes are what was left alone, and why, and warnings.
	Notes []string
	// ContainerdChanged is set when the containerd config changed:
	// containerd reads it only when it starts (see RestartHint).
	ContainerdChanged bool
}

func (r *Report) changed(format string, args ...any) {
	r.Changed = append(r.Changed, fmt.Sprintf(format, args...))
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// file is one file install puts on the host.
type file struct {
	path string // host path
	data []byte
	mode fs.FileMode
	// keep leaves a file that is not install's own in place instead of
	// replacing it (the administrator's configuration).
	keep bool
}

// Install installs scc into o.Root. It checks everything it reads, the
// containerd config included, before it writes anything: a config it cannot
// edit is refused with nothing written. Installing again updates what
// changed and is otherwise a no-op.
func Install(ctx context.Context, o Options) (rep Report, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return rep, err
	}
	h := host{root: o.Root}
	files, err := sources(o)
	if err != nil {
		return rep, err
	}
	st, err := h.loadState(o.StatePath)
	if err != nil {
		return rep, err
	}

	// The containerd config is prepared first so that a config that
	// cannot be edited stops the install before anything is written.
	ctrdPath := o.ContainerdConfig
	cur, err := h.readFile(ctrdPath)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("read containerd config: %w", err)
	}
	ro := RuntimeOptions{
		ShimPath:   filepath.Join(o.BinDir, ShimBinary),
		ConfigPath: o.ConfigPath,
		NewVersion: o.ContainerdConfigVersion,
		Sandboxer:  o.Sandboxer,
	}
	if o.ConfidentialConfig != "" {
		if !h.exists(o.ConfidentialConfig) {
			return rep, fmt.Errorf("the configuration of the confidential handler, %s, is not on the host: write it first (docs/confidential.md)", o.ConfidentialConfig)
		}
		ro.Confidential = &ConfidentialOptions{ConfigPath: o.ConfidentialConfig}
	}
	next, err := AddRuntime(cur, exists, ro)
	if err != nil {
		return rep, fmt.Errorf("containerd config %s: %w", ctrdPath, err)
	}

	// Whatever happens from here on is recorded, so that uninstall can
	// undo a partial install too.
	defer func() {
		if serr := h.saveState(o.StatePath, st); serr != nil {
			err = errors.Join(err, fmt.Errorf("save install state: %w", serr))
		}
	}()
	if err := h.mkdirAll(&st, filepath.Dir(o.StatePath)); err != nil {
		return rep, err
	}
	for _, f := range files {
		if err := installFile(ctx, h, &st, &rep, f); err != nil {
			return rep, err
		}
	}

	// containerd last: it must never name a shim that is not there yet.
	if exists && bytes.Equal(cur, next) {
		return rep, nil
	}
	if err := h.mkdirAll(&st, filepath.Dir(ctrdPath)); err != nil {
		return rep, err
	}
	if _, _, found, _ := RemoveRuntime(cur); exists && !found {
		backup := ctrdPath + backupSuffix
		if h.exists(backup) {
			rep.note("kept the existing %s", backup)
		} else {
			if err := h.writeFile(backup, cur, h.mode(ctrdPath, 0o644)); err != nil {
				return rep, fmt.Errorf("back up containerd config: %w", err)
			}
			st.ContainerdBackup = backup
			rep.changed("backed up %s to %s", ctrdPath, backup)
		}
	}
	if err := h.writeFile(ctrdPath, next, h.mode(ctrdPath, 0o644)); err != nil {
		return rep, err
	}
	st.ContainerdConfig = ctrdPath
	rep.ContainerdChanged = true
	if ro.Confidential != nil {
		rep.changed("added runtime handlers %q and %q, and the %q snapshotter, to %s", RuntimeName, ConfidentialRuntimeName, snapshotter.Name, ctrdPath)
	} else {
		rep.changed("added runtime handler %q to %s", RuntimeName, ctrdPath)
	}
	if CRIDisabled(next) {
		rep.note("%s disables the CRI plugin: Kubernetes cannot use any runtime of this containerd until it is enabled", ctrdPath)
	}
	return rep, nil
}

// sources reads and checks what install copies: both binaries and a guest
// image whose files match its manifest.
func sources(o Options) ([]file, error) {
	var files []file
	for _, b := range []string{ShimBinary, ToolBinary} {
		src := filepath.Join(o.BinSource, b)
		data, err := readRegular(src)
		if err != nil {
			return nil, fmt.Errorf("binary: %w", err)
		}
		files = append(files, file{path: filepath.Join(o.BinDir, b), data: data, mode: 0o755})
	}
	m, err := image.Load(o.GuestSource)
	if err != nil {
		return nil, err
	}
	if err := m.Verify(); err != nil {
		return nil, fmt.Errorf("guest image %s: %w", o.GuestSource, err)
	}
	src := filepath.Clean(o.GuestSource)
	for _, p := range append(m.Paths(), filepath.Join(src, image.ManifestName)) {
		// The manifest names its files relative to its directory; the
		// copy keeps the same names so the manifest stays valid.
		if filepath.Dir(filepath.Clean(p)) != src {
			return nil, fmt.Errorf("guest image file %s is not in %s", p, src)
		}
		data, err := readRegular(p)
		if err != nil {
			return nil, fmt.Errorf("guest image: %w", err)
		}
		files = append(files, file{path: filepath.Join(o.GuestDir, filepath.Base(p)), data: data, mode: 0o644})
	}
	cfg, err := shimConfig(o.GuestDir)
	if err != nil {
		return nil, err
	}
	files = append(files, file{path: o.ConfigPath, data: cfg, mode: 0o644, keep: true})
	if o.ConfidentialConfig != "" {
		files = append(files, file{path: SnapshotterUnit, data: snapshotterUnit(filepath.Join(o.BinDir, ToolBinary)), mode: 0o644})
	}
	return files, nil
}

// snapshotterUnit is the systemd unit that runs scc's snapshotter, before
// containerd, which cannot prepare a confidential container's snapshot
// without it.
func snapshotterUnit(scc string) []byte {
	return []byte(fmt.Sprintf(`# Written by "scc install"; removed by "scc uninstall" while unchanged.
[Unit]
Description=scc snapshotter: containerd snapshotter of confidential runtime handlers
Before=containerd.service

[Service]
ExecStart=%s snapshotter --root %s --address %s
Restart=always

[Install]
WantedBy=multi-user.target containerd.service
`, scc, snapshotter.DefaultRoot, snapshotter.DefaultAddress))
}

func readRegular(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return os.ReadFile(p)
}

// installFile puts f in place. A file install did not write is kept
// (f.keep) or moved aside to be restored by uninstall.
func installFile(ctx context.Context, h host, st *state, rep *Report, f file) error {
	want := digest(f.data)
	prev, ours := st.file(f.path)
	cur, err := h.readFile(f.path)
	switch {
	case err == nil && digest(cur) == want:
		if !ours {
			rep.note("%s was already there; uninstall will leave it", f.path)
		}
		return nil
	case err == nil && ours && digest(cur) == prev.SHA256:
		// Install's own file from before: update it.
	case err == nil && f.keep:
		st.dropFile(f.path)
		rep.note("kept %s: it is not the one install wrote", f.path)
		return nil
	case err == nil:
		if ours && prev.Backup != "" {
			log.G(ctx).WithField("path", f.path).Warn("replacing a file changed since install; its original stays in the backup")
			break
		}
		backup := f.path + backupSuffix
		if h.exists(backup) {
			return fmt.Errorf("%s exists and %s too: move one of them away", f.path, backup)
		}
		if err := h.rename(f.path, backup); err != nil {
			return fmt.Errorf("back up %s: %w", f.path, err)
		}
		prev = installedFile{Backup: backup}
		rep.changed("moved %s to %s", f.path, backup)
	case errors.Is(err, fs.ErrNotExist):
		prev = installedFile{}
		if err := h.mkdirAll(st, filepath.Dir(f.path)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read %s: %w", f.path, err)
	}
	if err := h.writeFile(f.path, f.data, f.mode); err != nil {
		return err
	}
	st.setFile(installedFile{Path: f.path, SHA256: want, Backup: prev.Backup})
	rep.changed("installed %s", f.path)
	return nil
}

// Uninstall removes what Install recorded: the runtime handler from the
// containerd config (the rest of the file is left as it is), the files
// install wrote that are unchanged since (files they replaced come back),
// and the directories it created that are empty. Without a record it still
// removes the runtime handler from o.ContainerdConfig.
func Uninstall(ctx context.Context, o Options) (Report, error) {
	var rep Report
	o, err := o.withDefaults()
	if err != nil {
		return rep, err
	}
	h := host{root: o.Root}
	st, err := h.loadState(o.StatePath)
	if err != nil {
		return rep, err
	}
	if st.ContainerdConfig == "" {
		st.ContainerdConfig = o.ContainerdConfig
	}
	if err := uninstallContainerd(h, st, &rep); err != nil {
		return rep, err
	}
	var errs []error
	for _, f := range st.Files {
		if err := uninstallFile(h, &rep, f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The record stays for another try.
		return rep, err
	}
	if err := h.remove(o.StatePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("remove install state: %w", err)
	}
	for _, d := range slices.Backward(st.Dirs) {
		err := h.remove(d)
		switch {
		case err == nil:
			rep.changed("removed directory %s", d)
		case errors.Is(err, fs.ErrNotExist):
		default:
			log.G(ctx).WithError(err).WithField("dir", d).Debug("directory not removed")
		}
	}
	return rep, nil
}

func uninstallContainerd(h host, st state, rep *Report) error {
	p := st.ContainerdConfig
	cur, err := h.readFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read containerd config: %w", err)
	}
	out, created, found, err := RemoveRuntime(cur)
	if err != nil {
		return fmt.Errorf("containerd config %s: %w", p, err)
	}
	if !found {
		return nil
	}
	if created && len(bytes.TrimSpace(out)) == 0 {
		if err := h.remove(p); err != nil {
			return fmt.Errorf("remove containerd config: %w", err)
		}
		rep.changed("removed %s (install had created it)", p)
	} else {
		if err := h.writeFile(p, out, h.mode(p, 0o644)); err != nil {
			return err
		}
		rep.changed("removed runtime handler %q from %s", RuntimeName, p)
	}
	rep.ContainerdChanged = true
	if st.ContainerdBackup != "" {
		b, err := h.readFile(st.ContainerdBackup)
		switch {
		case err == nil && bytes.Equal(b, out):
			if err := h.remove(st.ContainerdBackup); err != nil {
				return fmt.Errorf("remove containerd config backup: %w", err)
			}
			rep.changed("removed %s: the config is back to it", st.ContainerdBackup)
		case err == nil:
			rep.note("kept %s: %s was edited since install", st.ContainerdBackup, p)
		}
	}
	return nil
}

func uninstallFile(h host, rep *Report, f installedFile) error {
	cur, err := h.readFile(f.Path)
	switch {
	case err == nil && digest(cur) == f.SHA256:
		if err := h.remove(f.Path); err != nil {
			return fmt.Errorf("remove %s: %w", f.Path, err)
		}
		rep.changed("removed %s", f.Path)
	case err == nil:
		rep.note("left %s: it changed since install", f.Path)
		if f.Backup != "" {
			rep.note("the file it replaced is in %s", f.Backup)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	if f.Backup != "" && h.exists(f.Backup) {
		if err := h.rename(f.Backup, f.Path); err != nil {
			return fmt.Errorf("restore %s: %w", f.Path, err)
		}
		rep.changed("restored %s", f.Path)
	}
	return nil
}

// SnapshotterHint says how to start scc's snapshotter on the host in
// root, which must run before containerd loads a confidential handler.
// It never starts anything.
func SnapshotterHint(root string) string {
	if fi, err := os.Stat(filepath.Join(root, "run/systemd/system")); err == nil && fi.IsDir() {
		return "start scc's snapshotter before restarting containerd: systemctl daemon-reload && systemctl enable --now " + filepath.Base(SnapshotterUnit)
	}
	return "the node does not run systemd: run `scc snapshotter` (as " + SnapshotterUnit + " does) before restarting containerd"
}

// RestartHint says how to make containerd read its changed config on the
// host in root. It never restarts anything.
func RestartHint(root string) string {
	if fi, err := os.Stat(filepath.Join(root, "run/systemd/system")); err == nil && fi.IsDir() {
		return "restart containerd on the node to load the change: systemctl restart containerd"
	}
	return "the node does not run systemd: restart containerd by the means that started it to load the change"
}
