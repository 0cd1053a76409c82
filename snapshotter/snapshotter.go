// Package snapshotter is scc's containerd snapshotter for confidential
// runtime handlers: their guests pull, check, decrypt and unpack each
// container's image themselves (guest-agent/pull), so the host must not.
//
// containerd unpacks an image it pulls into the snapshotter of the
// runtime handler that asked for it (CRI: the handler's `snapshotter`).
// For each layer its unpacker first calls Prepare with the label
// containerd.io/snapshot.ref naming the layer's chain ID; a snapshotter
// that answers "already exists" (and then shows a committed snapshot of
// that name) makes it skip the layer: it fetches no blob and applies
// nothing. This one answers so for every layer, as remote snapshotters
// (stargz, nydus) do for layers they serve from elsewhere. Only the
// manifest and the config reach the host's content store; encrypted
// layers, which the host could not unpack without keys, and plain ones
// alike stay in the registry until the guest pulls them.
//
// A container's snapshot (Prepare or View without the label) is an empty
// directory, bind-mounted: the shim never shares it with a confidential
// container's guest, whose root is what the guest pulled. Next to it lies
// a marker (GuestPulled finds it), by which the shim tells such a rootfs
// from a real one and refuses to run a container that is not
// confidential on it. Snapshots never inherit their parents' files.
//
// Its metadata is containerd's bolt store of snapshots
// (core/snapshots/storage); Serve exposes it over containerd's snapshots
// API (a proxy plugin).
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Name is the snapshotter's name in containerd's configuration
// (proxy_plugins.scc, a runtime handler's snapshotter = "scc").
const Name = "scc"

// markerName is the file beside a container's rootfs directory that says
// the rootfs is a guest-pull placeholder.
const markerName = "scc-guest-pull"

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// Snapshotter keeps its metadata and the containers' empty root
// directories below one directory.
type Snapshotter struct {
	root string
	ms   *storage.MetaStore
	// dirs is held shared while a snapshot's directory is made and
	// exclusively by Cleanup, which would take it for an orphan.
	dirs sync.RWMutex
}

// New opens (or creates) the snapshotter whose state is in root.
func New(root string) (*Snapshotter, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("snapshotter root %q must be absolute: %w", root, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("create snapshotter root: %w", err)
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, fmt.Errorf("open snapshotter metadata: %w", err)
	}
	return &Snapshotter{root: root, ms: ms}, nil
}

// Close closes the metadata store.
func (s *Snapshotter) Close() error { return s.ms.Close() }

// GuestPulled reports whether a rootfs mount source is the directory this
// snapshotter gives a container: the container's image was left to its
// guest, and the host has none of its files.
func GuestPulled(source string) bool {
	fi, err := os.Lstat(filepath.Join(filepath.Dir(filepath.Clean(source)), markerName))
	return err == nil && fi.Mode().IsRegular()
}

// Prepare skips a layer of an unpack (one with containerd.io/snapshot.ref):
// it records the layer as committed under its chain ID and reports that
// it already exists. Any other Prepare gets an empty, writable directory.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, err
		}
	}
	if target := base.Labels[snapshots.LabelSnapshotRef]; target != "" {
		return nil, s.skipLayer(ctx, key, parent, target, base.Labels[labelLayerDigest], opts)
	}
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View gives an empty, read-only directory.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// skipLayer commits the layer's snapshot, without content, as target,
// and returns the error that tells containerd's unpacker to skip the
// layer. A target that exists already is skipped all the same.
func (s *Snapshotter) skipLayer(ctx context.Context, key, parent, target, layer string, opts []snapshots.Opt) error {
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		if _, err := storage.CreateSnapshot(ctx, snapshots.KindActive, key, parent, opts...); err != nil {
			return fmt.Errorf("create layer snapshot %s: %w", key, err)
		}
		if _, err := storage.CommitActive(ctx, key, target, snapshots.Usage{}, opts...); err != nil {
			return fmt.Errorf("commit layer snapshot %s: %w", target, err)
		}
		return nil
	})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	log.G(ctx).WithField("chain_id", target).WithField("layer", layer).Debug("layer left to the guest")
	return fmt.Errorf("layer %s is pulled by the guest: %w", target, errdefs.ErrAlreadyExists)
}

// labelLayerDigest is the layer digest containerd's CRI (and the
// transfer service, for snapshotters that export
// enable_remote_snapshot_annotations) adds to a layer's labels.
const labelLayerDigest = "containerd.io/snapshot/cri.layer-digest"

// create makes an active or view snapshot: an empty directory with the
// guest-pull marker beside it.
func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (_ []mount.Mount, retErr error) {
	s.dirs.RLock()
	defer s.dirs.RUnlock()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), "new-")
	if err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	defer func() {
		if tmp != "" {
			if err := os.RemoveAll(tmp); err != nil {
				log.G(ctx).WithError(err).Warn("remove unused snapshot dir")
			}
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, markerName), nil, 0o444); err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	var snap storage.Snapshot
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		var err error
		if snap, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...); err != nil {
			return fmt.Errorf("create snapshot %s: %w", key, err)
		}
		if err := os.Rename(tmp, s.dir(snap.ID)); err != nil {
			return fmt.Errorf("create snapshot %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tmp = ""
	return s.mounts(snap), nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	var snap storage.Snapshot
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		var err error
		snap, err = storage.GetSnapshot(ctx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %s: %w", key, err)
	}
	return s.mounts(snap), nil
}

func (s *Snapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	mode := "rw"
	if snap.Kind == snapshots.KindView {
		mode = "ro"
	}
	return []mount.Mount{{
		Type:    "bind",
		Source:  filepath.Join(s.dir(snap.ID), "fs"),
		Options: []string{"rbind", mode},
	}}
}

// Commit commits an active snapshot as name.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return fmt.Errorf("commit snapshot %s: %w", key, err)
		}
		du, err := fs.DiskUsage(ctx, s.dir(id))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("commit snapshot %s: %w", key, err)
		}
		if _, err := storage.CommitActive(ctx, key, name, snapshots.Usage(du), opts...); err != nil {
			return fmt.Errorf("commit snapshot %s: %w", key, err)
		}
		return nil
	})
}

// Remove removes a snapshot and its directory, if it has one (skipped
// layers have none).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	var id string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		var err error
		if id, _, err = storage.Remove(ctx, key); err != nil {
			return fmt.Errorf("remove snapshot %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(s.dir(id)); err != nil {
		// Cleanup removes it later.
		log.G(ctx).WithError(err).WithField("key", key).Warn("remove snapshot dir")
	}
	return nil
}

// Stat returns a snapshot's info.
func (s *Snapshotter) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	return info, err
}

// Update updates a snapshot's labels.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (out snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		out, err = storage.UpdateInfo(ctx, info, fieldpaths...)
		return err
	})
	return out, err
}

// Usage is the disk usage of an active snapshot's directory (what the
// container wrote there, which is nothing unless something on the host
// did), or what a committed one recorded.
func (s *Snapshotter) Usage(ctx context.Context, key string) (usage snapshots.Usage, err error) {
	var (
		id   string
		info snapshots.Info
	)
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return snapshots.Usage{}, err
	}
	if info.Kind == snapshots.KindActive {
		du, err := fs.DiskUsage(ctx, s.dir(id))
		if err != nil {
			return snapshots.Usage{}, fmt.Errorf("usage of snapshot %s: %w", key, err)
		}
		usage = snapshots.Usage(du)
	}
	return usage, nil
}

// Walk calls fn for each snapshot matching the filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

// Cleanup removes directories no snapshot owns (left by a crash between
// a removal and its directory's).
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	s.dirs.Lock()
	defer s.dirs.Unlock()
	var ids map[string]string
	if err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		var err error
		ids, err = storage.IDMap(ctx)
		if errdefs.IsNotFound(err) { // no snapshot was ever made
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "snapshots"))
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if _, ok := ids[e.Name()]; ok {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.root, "snapshots", e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Snapshotter) dir(id string) string {
	return filepath.Join(s.root, "snapshots", id)
}
