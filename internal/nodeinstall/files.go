package nodeinstall

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// backupSuffix names the copy of a file install replaced.
const backupSuffix = ".scc-backup"

// state records what install did, for uninstall to undo exactly that. All
// paths are host paths (without the root prefix).
type state struct {
	Files []installedFile `json:"files"`
	// Dirs were created by install, parents first; uninstall removes those
	// left empty.
	Dirs []string `json:"dirs,omitempty"`
	// ContainerdConfig is the containerd config the runtime was added to,
	// and ContainerdBackup its copy from before the first install.
	ContainerdConfig string `json:"containerd_config,omitempty"`
	ContainerdBackup string `json:"containerd_backup,omitempty"`
}

// installedFile is a file install wrote.
type installedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Backup holds the file it replaced, restored by uninstall.
	Backup string `json:"backup,omitempty"`
}

func (s *state) file(path string) (installedFile, bool) {
	i := slices.IndexFunc(s.Files, func(f installedFile) bool { return f.Path == path })
	if i < 0 {
		return installedFile{}, false
	}
	return s.Files[i], true
}

func (s *state) setFile(f installedFile) {
	s.dropFile(f.Path)
	s.Files = append(s.Files, f)
}

func (s *state) dropFile(path string) {
	s.Files = slices.DeleteFunc(s.Files, func(f installedFile) bool { return f.Path == path })
}

func (s *state) addDir(dir string) {
	if !slices.Contains(s.Dirs, dir) {
		s.Dirs = append(s.Dirs, dir)
	}
}

// host maps host paths into the root directory. Symbolic links are
// resolved inside the root: an absolute link on the host must not lead
// out of /host when install runs in a container.
type host struct{ root string }

func (h host) path(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("host path %q is not absolute", p)
	}
	return securejoin.SecureJoin(h.root, p)
}

func (h host) readFile(p string) ([]byte, error) {
	rp, err := h.path(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(rp)
}

// mkdirAll creates dir and its missing parents, recording each one it
// created in st.
func (h host) mkdirAll(st *state, dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		rp, err := h.path(d)
		if err != nil {
			return err
		}
		fi, err := os.Stat(rp)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == "/" {
			break
		}
	}
	for _, d := range slices.Backward(missing) {
		rp, err := h.path(d)
		if err != nil {
			return err
		}
		if err := os.Mkdir(rp, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		st.addDir(d)
	}
	return nil
}

// writeFile replaces p atomically (a temporary file renamed over it), so
// containerd or a running shim never sees half a file, and a running
// binary can be replaced.
func (h host) writeFile(p string, data []byte, mode fs.FileMode) error {
	rp, err := h.path(p)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(rp), "."+filepath.Base(rp)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(f.Name(), rp); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

func (h host) rename(from, to string) error {
	rf, err := h.path(from)
	if err != nil {
		return err
	}
	rt, err := h.path(to)
	if err != nil {
		return err
	}
	return os.Rename(rf, rt)
}

func (h host) remove(p string) error {
	rp, err := h.path(p)
	if err != nil {
		return err
	}
	return os.Remove(rp)
}

func (h host) exists(p string) bool {
	rp, err := h.path(p)
	if err != nil {
		return false
	}
	_, err = os.Lstat(rp)
	return err == nil
}

// mode returns the permission bits of p, or def when p does not exist.
func (h host) mode(p string, def fs.FileMode) fs.FileMode {
	rp, err := h.path(p)
	if err != nil {
		return def
	}
	fi, err := os.Stat(rp)
	if err != nil {
		return def
	}
	return fi.Mode().Perm()
}

func (h host) loadState(p string) (state, error) {
	var st state
	b, err := h.readFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read install state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse install state %s: %w", p, err)
	}
	return st, nil
}

func (h host) saveState(p string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return h.writeFile(p, append(b, '\n'), 0o644)
}

func digest(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}
