package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/sccontainers/scc/snapshot"
	"github.com/sccontainers/scc/snapshot/pool"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// poolDirName is the pool's directory in state_dir: pooled VMs become
// sandboxes by a rename, which needs one file system.
const poolDirName = "pool"

// memoryFile records a pooled VM's guest memory, for the memory budget.
const memoryFile = "memory_mib"

func vmPool(cfg Config) pool.Pool {
	return pool.Pool{Dir: filepath.Join(cfg.StateDir, poolDirName)}
}

// usesPool reports whether sandboxes of cfg take pooled VMs.
func usesPool(cfg Config) bool {
	return cfg.Pool.Size > 0 && cfg.Snapshot.Enabled &&
		(cfg.VM.Start == StartAuto || cfg.VM.Start == StartPool)
}

// poolKey is the key of the pooled VMs that can serve vc: the key of the
// template they are restored from. ok is false for a VM no template can
// serve.
func poolKey(cfg Config, img guestFiles, vc vmm.Config) (string, bool) {
	if !img.snapshottable || vc.TPM != nil || len(vc.Net) > vc.HotplugPorts {
		return "", false
	}
	k, err := newTemplateKey(cfg, img, vc)
	if err != nil {
		return "", false
	}
	key, err := snapshot.Key(k)
	if err != nil {
		return "", false
	}
	return poolKeyOf(key), true
}

// poolKeyOf shortens a template key to the pool's: unix socket paths below
// the pool directory must stay short. 96 bits keep keys apart.
func poolKeyOf(templateKey string) string {
	if len(templateKey) > 24 {
		return templateKey[:24]
	}
	return templateKey
}

// claimPooled starts the sandbox's VM from a pooled one of its
// configuration. It returns false when none was ready or the one taken
// did not work; the sandbox directory is then left as it was (absent) and
// nothing taken keeps running, so the caller starts a VM another way.
func (sb *sandbox) claimPooled(ctx context.Context, cfg Config, img guestFiles, vc vmm.Config) bool {
	key, ok := poolKey(cfg, img, vc)
	if !ok {
		return false
	}
	p := vmPool(cfg)
	// A pooled VM may have died while it waited: try the next one.
	for attempt := 0; attempt < 3; attempt++ {
		e, err := p.Claim(key, sb.dir)
		if errors.Is(err, pool.ErrEmpty) {
			return false
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("take pooled VM")
			return false
		}
		err = sb.adoptPooled(ctx, cfg, vc, e.ID, key)
		if err == nil {
			return true
		}
		log.G(ctx).WithError(err).WithField(logVM, e.ID).Warn("pooled VM unusable; discarding it")
		sb.stopVM(context.WithoutCancel(ctx))
		killPooledVM(sb.dir, e.ID)
		if err := removeStateDir(sb.dir); err != nil {
			log.G(ctx).WithError(err).Warn("remove pooled VM")
			return false
		}
	}
	return false
}

// adoptPooled takes over the QEMU of a pooled VM now in the sandbox's
// directory and brings it to where a restored VM is.
func (sb *sandbox) adoptPooled(ctx context.Context, cfg Config, vc vmm.Config, id, key string) error {
	// The restore is recorded with the template's digest.
	tmpl, ok := lookupPoolTemplate(snapshot.Store{Dir: cfg.Snapshot.Dir}, key)
	if !ok {
		return fmt.Errorf("the template of pooled VM %s is gone: %w", id, errdefs.ErrNotFound)
	}
	vc.ID = id // the name its QEMU runs under
	vc = hotplugNet(vc)
	vm, err := qemu.Driver{Binary: cfg.VM.QEMU}.Adopt(ctx, vc)
	if err != nil {
		return err
	}
	sb.vm = vm
	return sb.resumeRestored(ctx, cfg, vc, tmpl)
}

// FillPool adds VMs restored from the template of cfg's configuration to
// the pool until it holds pool.size of them, within pool.max_vms and
// pool.memory_budget_mib, creating the template first if it is missing.
// It returns at once when another process is filling the same pool. It
// also stops pooled VMs no sandbox can use any more: those whose QEMU
// died and those of configurations whose template is gone.
func FillPool(ctx context.Context, cfg Config) (added int, _ error) {
	if cfg.Pool.Size == 0 {
		return 0, fmt.Errorf("pool.size is 0: %w", errdefs.ErrFailedPrecondition)
	}
	if cfg.VM.Start == StartReuse {
		return 0, fmt.Errorf("vm.start = %q: the pool holds the VMs of ended sandboxes, cleaned, and is not filled: %w", StartReuse, errdefs.ErrFailedPrecondition)
	}
	if cfg.VM.TPM {
		return 0, fmt.Errorf("VMs with a vTPM are not pooled: %w", errdefs.ErrFailedPrecondition)
	}
	img, err := guestImage(cfg)
	if err != nil {
		return 0, err
	}
	// The VM of a sandbox without a pod network: the pool's VMs get their
	// interfaces when taken.
	key, ok := poolKey(cfg, img, vmConfig(cfg, img, "pool", cfg.StateDir, cfg.StateDir))
	if !ok {
		return 0, fmt.Errorf("this configuration's VMs cannot be pooled (own kernel or initrd, or a vTPM): %w", errdefs.ErrFailedPrecondition)
	}
	p := vmPool(cfg)
	unlock, ok, err := p.LockFill(key, false)
	if err != nil || !ok {
		return 0, err
	}
	defer unlock()
	pruneDead(ctx, p, key)
	pruneStale(ctx, cfg, p, key)

	tmpl, err := ensureTemplate(ctx, cfg, key)
	if err != nil {
		return 0, err
	}
	for {
		ready, err := p.Ready(key)
		if err != nil {
			return added, err
		}
		if len(ready) >= cfg.Pool.Size {
			return added, nil
		}
		if why := overBudget(cfg); why != "" {
			log.G(ctx).Info("pool not filled: " + why)
			return added, nil
		}
		if err := addPooledVM(ctx, cfg, img, p, key, tmpl); err != nil {
			return added, err
		}
		added++
	}
}

// ensureTemplate returns the template of key, creating it (or waiting for
// the process that creates it) when it is missing.
func ensureTemplate(ctx context.Context, cfg Config, key string) (snapshot.Template, error) {
	store := snapshot.Store{Dir: cfg.Snapshot.Dir}
	deadline := time.Now().Add(3 * cfg.VM.BootTimeout.Duration)
	for {
		if t, ok := lookupPoolTemplate(store, key); ok {
			return t, nil
		}
		t, err := CreateTemplate(ctx, cfg)
		if err == nil {
			if poolKeyOf(t.Key) != key {
				return snapshot.Template{}, fmt.Errorf("template %s made for pool %s", t.Key, key)
			}
			return t, nil
		}
		if !errors.Is(err, snapshot.ErrBusy) || time.Now().After(deadline) {
			return snapshot.Template{}, fmt.Errorf("pool template: %w", err)
		}
		select {
		case <-ctx.Done():
			return snapshot.Template{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// addPooledVM restores one VM from tmpl into the pool, paused, its QEMU
// detached from this process.
func addPooledVM(ctx context.Context, cfg Config, img guestFiles, p pool.Pool, key string, tmpl snapshot.Template) (retErr error) {
	st, err := p.Add(key)
	if err != nil {
		return err
	}
	var vm *qemu.VM
	defer func() {
		if retErr != nil {
			if vm != nil {
				vm.Stop(context.WithoutCancel(ctx))
			}
			os.RemoveAll(st.Dir)
		}
	}()
	shared := filepath.Join(st.Dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return fmt.Errorf("create shared dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, memoryFile), []byte(strconv.Itoa(cfg.VM.MemoryMiB)), 0o600); err != nil {
		return err
	}
	vc := restoredConfig(vmConfig(cfg, img, st.ID, st.Dir, shared), tmpl)
	vm, err = qemu.Driver{Binary: cfg.VM.QEMU, Detached: true}.NewVM(vc)
	if err != nil {
		return fmt.Errorf("configure pooled VM: %w", err)
	}
	if err := vm.Restore(ctx, tmpl.StatePath()); err != nil {
		var qerr error = err
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			// As for sandboxes: a template QEMU cannot load is dropped.
			removeTemplate(cfg, tmpl.Key)
		}
		return fmt.Errorf("restore pooled VM: %w", qerr)
	}
	if err := vm.Release(); err != nil {
		return err
	}
	if err := st.Commit(); err != nil {
		killPooledVM(st.Dir, st.ID)
		return err
	}
	vm = nil
	return nil
}

// lookupPoolTemplate finds the template of a pool key.
func lookupPoolTemplate(store snapshot.Store, key string) (snapshot.Template, bool) {
	ts, err := store.List()
	if err != nil {
		return snapshot.Template{}, false
	}
	for _, t := range ts {
		if poolKeyOf(t.Key) == key {
			return t, true
		}
	}
	return snapshot.Template{}, false
}

// overBudget says why the pool may not grow, or "".
func overBudget(cfg Config) string {
	entries, _ := vmPool(cfg).List()
	if cfg.Pool.MemoryBudgetMiB > 0 {
		used := 0
		for _, e := range entries {
			used += pooledMemory(e.Dir, cfg.VM.MemoryMiB)
		}
		if used+cfg.VM.MemoryMiB > cfg.Pool.MemoryBudgetMiB {
			return fmt.Sprintf("memory budget: %d MiB pooled, budget %d MiB", used, cfg.Pool.MemoryBudgetMiB)
		}
	}
	if cfg.Pool.MaxVMs > 0 {
		n := len(entries) + countSandboxes(cfg.StateDir)
		if n >= cfg.Pool.MaxVMs {
			return fmt.Sprintf("%d VMs, max_vms %d", n, cfg.Pool.MaxVMs)
		}
	}
	return ""
}

func pooledMemory(dir string, def int) int {
	b, err := os.ReadFile(filepath.Join(dir, memoryFile))
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return def
	}
	return n
}

// countSandboxes counts the sandbox VMs of state_dir whose QEMU runs.
func countSandboxes(stateDir string) int {
	des, err := os.ReadDir(stateDir)
	if err != nil {
		return 0
	}
	n := 0
	for _, de := range des {
		if de.IsDir() && de.Name() != poolDirName && vmPid(filepath.Join(stateDir, de.Name())) > 0 {
			n++
		}
	}
	return n
}

// pruneDead removes the ready VMs of key whose QEMU is gone.
func pruneDead(ctx context.Context, p pool.Pool, key string) {
	ready, _ := p.Ready(key)
	for _, e := range ready {
		if vmPid(e.Dir) > 0 {
			continue
		}
		log.G(ctx).WithField(logVM, e.ID).Warn("pooled VM died while idle; removing it")
		os.RemoveAll(e.Dir)
	}
}

// pruneStale stops the pooled VMs of configurations whose template no
// longer exists (a new guest image, a removed template).
func pruneStale(ctx context.Context, cfg Config, p pool.Pool, current string) {
	keys, _ := p.Keys()
	store := snapshot.Store{Dir: cfg.Snapshot.Dir}
	for _, k := range keys {
		if k == current || strings.HasPrefix(k, reusePrefix) {
			// Reused VMs come from no template.
			continue
		}
		if _, ok := lookupPoolTemplate(store, k); ok {
			continue
		}
		if _, err := drainKey(ctx, p, k); err != nil {
			log.G(ctx).WithError(err).Warn("drain stale pool")
		}
	}
}

// DrainPool stops every pooled VM of cfg's state_dir and removes the pool,
// waiting for fills in progress to end first.
func DrainPool(ctx context.Context, cfg Config) (stopped int, _ error) {
	p := vmPool(cfg)
	keys, err := p.Keys()
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, k := range keys {
		n, err := drainKey(ctx, p, k)
		stopped += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		os.Remove(p.Dir) // only when empty: a fill may have started since
	}
	return stopped, errors.Join(errs...)
}

// drainKey stops the pooled VMs of key, ready or being added, and
// returns how many it stopped.
func drainKey(ctx context.Context, p pool.Pool, key string) (int, error) {
	unlock, _, err := p.LockFill(key, true)
	if err != nil {
		return 0, err
	}
	defer unlock()
	all, err := p.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range all {
		if e.Key != key {
			continue
		}
		killPooledVM(e.Dir, e.ID)
		if err := removeStateDir(e.Dir); err != nil {
			return n, err
		}
		n++
	}
	return n, p.RemoveKey(key)
}

// killPooledVM kills the QEMU (and vTPM, for a reused VM) of the pooled
// VM in dir, if it runs, and waits for it to go.
func killPooledVM(dir, id string) {
	if pid := qemu.ProcessOf(dir, id); pid > 0 {
		killAndWait(pid, 5*time.Second)
	}
	killVMProcesses(dir)
}

// ListPool returns the pool's VMs, ready or being added.
func ListPool(cfg Config) ([]pool.Entry, error) {
	return vmPool(cfg).List()
}
