// Package pool keeps VMs that are ready to serve a sandbox: restored from
// a template and paused, each in a directory of its own under
// Dir/<key>/<id>, key naming the VM configuration they fit (the template
// key).
//
// The pool is only directories. A sandbox takes a VM by renaming its
// directory to the sandbox's own state directory: rename is atomic, so of
// two shims racing for one VM exactly one gets it, and no daemon has to
// hand VMs out. The VMM's sockets and open files move with the directory.
// Dir must be on the file system of the sandbox state directories.
//
// A VM being added lives in Dir/<key>/.n-<id> until it is ready; one
// process adds VMs of a key at a time (LockFill).
package pool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const (
	stagingPrefix = ".n-"
	lockName      = ".fill.lock"
	// IDFile, in a VM's directory, holds the VM's id, which its VMM
	// process name carries: it lets a later process check that a pid is
	// still that VM's VMM (see vmm/qemu.ProcessOf). It is the pool
	// entry's id for a VM the pool started, the first sandbox's for one
	// that a sandbox started and Put there.
	IDFile = "vmid"
)

// ErrEmpty is returned by Claim when the pool has no ready VM of the key.
var ErrEmpty = errors.New("no pooled VM ready")

// Pool is a directory of ready VMs.
type Pool struct {
	Dir string
}

// Entry is one VM in the pool.
type Entry struct {
	Key     string
	ID      string
	Dir     string
	Ready   bool // false while it is being added
	Created time.Time
}

func (p Pool) keyDir(key string) string { return filepath.Join(p.Dir, key) }

// List returns the pool's VMs, ready or being added, of every key, oldest
// first.
func (p Pool) List() ([]Entry, error) {
	keys, err := os.ReadDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pool: %w", err)
	}
	var all []Entry
	for _, k := range keys {
		if !k.IsDir() {
			continue
		}
		es, err := p.entries(k.Name())
		if err != nil {
			return nil, err
		}
		all = append(all, es...)
	}
	sortEntries(all)
	return all, nil
}

// Ready returns the ready VMs of key, oldest first.
func (p Pool) Ready(key string) ([]Entry, error) {
	es, err := p.entries(key)
	if err != nil {
		return nil, err
	}
	ready := es[:0]
	for _, e := range es {
		if e.Ready {
			ready = append(ready, e)
		}
	}
	sortEntries(ready)
	return ready, nil
}

func (p Pool) entries(key string) ([]Entry, error) {
	des, err := os.ReadDir(p.keyDir(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pool: %w", err)
	}
	var es []Entry
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // claimed meanwhile
		}
		name := de.Name()
		id, staging := strings.CutPrefix(name, stagingPrefix)
		if strings.HasPrefix(name, ".") && !staging {
			continue
		}
		es = append(es, Entry{
			Key: key, ID: id, Dir: filepath.Join(p.keyDir(key), name),
			Ready: !staging, Created: info.ModTime(),
		})
	}
	return es, nil
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].Created.Before(es[j].Created) })
}

// Claim moves the oldest ready VM of key to dst, which must not exist, and
// returns it with Dir set to dst. It returns ErrEmpty when there is none.
// The caller owns the VM from then on: it adopts it, or stops it and
// removes dst.
func (p Pool) Claim(key, dst string) (Entry, error) {
	es, err := p.Ready(key)
	if err != nil {
		return Entry{}, err
	}
	for _, e := range es {
		err := os.Rename(e.Dir, dst)
		if err == nil {
			e.Dir = dst
			return e, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // another sandbox took it first
		}
		return Entry{}, fmt.Errorf("claim pooled VM: %w", err)
	}
	return Entry{}, ErrEmpty
}

// Put moves dir, the directory of a running VM that served a sandbox and
// is ready for another, into the pool under key, where Claim finds it.
// Its IDFile must name the VM; dir must be on the pool's file system.
func (p Pool) Put(key, dir string) (Entry, error) {
	id, err := newID()
	if err != nil {
		return Entry{}, err
	}
	kd := p.keyDir(key)
	if err := os.MkdirAll(kd, 0o700); err != nil {
		return Entry{}, fmt.Errorf("create pool dir: %w", err)
	}
	dst := filepath.Join(kd, id)
	if err := os.Rename(dir, dst); err != nil {
		return Entry{}, fmt.Errorf("put VM in pool: %w", err)
	}
	// Claim takes the oldest first: this one is the newest.
	now := time.Now()
	_ = os.Chtimes(dst, now, now)
	return Entry{Key: key, ID: id, Dir: dst, Ready: true, Created: now}, nil
}

func newID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "p" + hex.EncodeToString(b), nil
}

// Staging is a VM being added to the pool.
type Staging struct {
	Entry
	final string
}

// Add makes the directory of a new VM of key, not yet visible to Claim.
// Start the VM in s.Dir, then Commit it, or Abort.
func (p Pool) Add(key string) (*Staging, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	kd := p.keyDir(key)
	if err := os.MkdirAll(kd, 0o700); err != nil {
		return nil, fmt.Errorf("create pool dir: %w", err)
	}
	dir := filepath.Join(kd, stagingPrefix+id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pooled VM dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, IDFile), []byte(id), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create pooled VM dir: %w", err)
	}
	return &Staging{Entry: Entry{Key: key, ID: id, Dir: dir}, final: filepath.Join(kd, id)}, nil
}

// Commit makes the VM ready for Claim.
func (s *Staging) Commit() error {
	if err := os.Rename(s.Dir, s.final); err != nil {
		return fmt.Errorf("add pooled VM: %w", err)
	}
	s.Dir, s.Ready = s.final, true
	return nil
}

// LockFill takes the key's fill lock: ok is false when another process
// holds it and wait is false. The lock ends with unlock or the process.
func (p Pool) LockFill(key string, wait bool) (unlock func(), ok bool, err error) {
	if err := os.MkdirAll(p.keyDir(key), 0o700); err != nil {
		return nil, false, fmt.Errorf("create pool dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(p.keyDir(key), lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open pool lock: %w", err)
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock pool: %w", err)
	}
	return func() { f.Close() }, true, nil
}

// Keys lists the keys the pool has directories for.
func (p Pool) Keys() ([]string, error) {
	des, err := os.ReadDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pool: %w", err)
	}
	var keys []string
	for _, de := range des {
		if de.IsDir() {
			keys = append(keys, de.Name())
		}
	}
	return keys, nil
}

// RemoveKey removes the directory of key once it holds no VM.
func (p Pool) RemoveKey(key string) error {
	es, err := p.entries(key)
	if err != nil {
		return err
	}
	if len(es) > 0 {
		return fmt.Errorf("remove pool key %s: %d VMs left", key, len(es))
	}
	return os.RemoveAll(p.keyDir(key))
}

// ReadID returns the VM id recorded in a VM directory, "" if none.
func ReadID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, IDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
