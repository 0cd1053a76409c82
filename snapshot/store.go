// Package snapshot keeps VM templates: the saved state of a VM booted to
// "agent ready, no tenant". Restoring a template instead of booting skips
// the firmware, the kernel's boot and the agent's start. One template
// exists per VM configuration, named by a key derived from everything that
// must match between the saved VM and the restored one.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrBusy is returned by Create while another process creates the same
// template.
var ErrBusy = errors.New("template is being created by another process")

// Files of a template directory.
const (
	stateName  = "state"     // the VM state (QEMU migration stream)
	memoryName = "memory"    // the VM's memory, when the state leaves it out
	metaName   = "meta.json" // written last: a template without it is incomplete
)

// Store is a directory of templates, <Dir>/<key>/.
type Store struct {
	Dir string
}

// Template is one complete template.
type Template struct {
	Key     string
	Dir     string
	Created time.Time
	// Digest is the SHA-256 of the saved state followed by the memory
	// file, if the template has one, hex: the name a VM restored from the
	// template records in its TPM and an attestation policy approves
	// (attest/policy's origin).
	Digest string
	// HasMemory says the template's memory is a file of its own
	// (MemoryPath), which VMs restored from it map, rather than part of
	// the state.
	HasMemory bool
	// Config is what the template was made from, for people reading it.
	Config json.RawMessage
}

// StatePath is the file holding the saved VM state.
func (t Template) StatePath() string { return filepath.Join(t.Dir, stateName) }

// MemoryPath is the file holding the saved VM's memory, if HasMemory.
func (t Template) MemoryPath() string { return filepath.Join(t.Dir, memoryName) }

// Files are where Create's save function writes a template: the VM state,
// and optionally the VM's memory.
type Files struct {
	State  string
	Memory string
}

type meta struct {
	Key     string          `json:"key"`
	Created time.Time       `json:"created"`
	Digest  string          `json:"digest"`
	Memory  bool            `json:"memory,omitempty"`
	Config  json.RawMessage `json:"config"`
}

func (m meta) template(dir string) Template {
	return Template{Key: m.Key, Dir: dir, Created: m.Created, Digest: m.Digest, HasMemory: m.Memory, Config: m.Config}
}

// Key names the template of a configuration: the SHA-256 of v's JSON
// encoding. v must hold everything that has to match between the VM that
// is saved and the VMs restored from it (devices, memory, vCPUs, the
// digests of kernel and initrd, the command line, the VMM build).
func Key(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("template key: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Lookup returns the complete template for key, if there is one.
func (s Store) Lookup(key string) (Template, bool) {
	dir := filepath.Join(s.Dir, key)
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return Template{}, false
	}
	var m meta
	if json.Unmarshal(b, &m) != nil || m.Key != key {
		return Template{}, false
	}
	t := m.template(dir)
	if _, err := os.Stat(t.StatePath()); err != nil {
		return Template{}, false
	}
	if _, err := os.Stat(t.MemoryPath()); t.HasMemory && err != nil {
		return Template{}, false
	}
	return t, true
}

// Create makes the template for key: save must write the VM's state to
// files.State and may write its memory to files.Memory. The template
// appears whole or not at all, and only one process creates a given
// template at a time (others get ErrBusy).
func (s Store) Create(ctx context.Context, key string, config any, save func(ctx context.Context, files Files) error) (_ Template, retErr error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return Template{}, ErrBusy
		}
		return Template{}, fmt.Errorf("create template: lock: %w", err)
	}
	if t, ok := s.Lookup(key); ok {
		return t, nil
	}
	tmp, err := os.MkdirTemp(s.Dir, key+".tmp-")
	if err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(tmp)
		}
	}()
	files := Files{State: filepath.Join(tmp, stateName), Memory: filepath.Join(tmp, memoryName)}
	if err := save(ctx, files); err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	paths := []string{files.State}
	_, err = os.Stat(files.Memory)
	hasMemory := err == nil
	if hasMemory {
		paths = append(paths, files.Memory)
	}
	digest, err := filesSHA256(paths...)
	if err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	m := meta{Key: key, Created: time.Now().UTC(), Digest: digest, Memory: hasMemory, Config: cfg}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Template{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, metaName), b, 0o600); err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	dir := filepath.Join(s.Dir, key)
	// A stale incomplete directory of the same key would block the rename.
	if err := os.RemoveAll(dir); err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Template{}, fmt.Errorf("create template: %w", err)
	}
	return m.template(dir), nil
}

// filesSHA256 returns the hex SHA-256 of the files' contents, one after
// the other.
func filesSHA256(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		if err := hashFile(h, p); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("hash %s: %w", path, err)
	}
	return nil
}

// List returns the complete templates.
func (s Store) List() ([]Template, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	var ts []Template
	for _, e := range entries {
		if t, ok := s.Lookup(e.Name()); ok && e.IsDir() {
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// Remove deletes the template for key.
func (s Store) Remove(key string) error {
	if err := os.RemoveAll(filepath.Join(s.Dir, key)); err != nil {
		return fmt.Errorf("remove template: %w", err)
	}
	os.Remove(filepath.Join(s.Dir, key+".lock"))
	return nil
}
