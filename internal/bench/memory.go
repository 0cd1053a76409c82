package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// memory starts IdleSandboxes idle containers (`sleep`) per mode, lets
// them settle, measures the PSS of each sandbox's host processes and
// removes them before the next mode.
func (r *runner) memory(ctx context.Context) []MemoryResult {
	var out []MemoryResult
	for _, m := range r.sandboxModes(r.opts.ScaleVMMemoryMiB) {
		if ctx.Err() != nil {
			break
		}
		res := MemoryResult{Mode: m}
		sbs, err := r.idle(ctx, m)
		if err != nil {
			res.Error = err.Error()
			r.progressf("  %-16s failed: %v\n", m.Name, err)
		} else {
			res.Sandboxes = sbs
			s := res.Summary()
			r.progressf("  %-16s %d sandboxes, %s PSS each (shim %s)\n", m.Name, s.Sandboxes, formatBytes(s.PSS), formatBytes(s.ShimPSS))
		}
		r.removeContainers(context.WithoutCancel(ctx))
		out = append(out, res)
	}
	return out
}

func (r *runner) idle(ctx context.Context, m Mode) ([]SandboxMemory, error) {
	var ids []string
	for k := 0; k < r.opts.IdleSandboxes; k++ {
		id := fmt.Sprintf("idle-%s-%d", m.Key, k)
		if _, err := r.ctrRun(ctx, m, id, []string{"--detach"}, "sleep", "1000"); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	select {
	case <-time.After(r.opts.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var sbs []SandboxMemory
	for _, id := range ids {
		sb, err := sandboxMemory(procRoot, r.d.Address(), id)
		if err != nil {
			return nil, err
		}
		sbs = append(sbs, sb)
	}
	return sbs, nil
}

// pooledMemory fills a pool of IdleSandboxes VMs, lets them settle and
// measures the PSS of each pooled VM's QEMU: what a ready VM costs before
// any sandbox takes it. The pool is drained afterwards.
func (r *runner) pooledMemory(ctx context.Context) *MemoryResult {
	m := Mode{
		Key: ModeSCCPool, Name: "scc (pooled VM, idle)", Runtime: "io.containerd.scc.v2",
		VMMemoryMiB: r.opts.ScaleVMMemoryMiB, VCPUs: 1, Template: true, Pool: r.opts.IdleSandboxes,
	}
	res := &MemoryResult{Mode: m}
	fail := func(err error) *MemoryResult {
		res.Error = err.Error()
		r.progressf("  %-16s failed: %v\n", m.Name, err)
		return res
	}
	// The pool lists every key's VMs: those the start phase left (its
	// pool and reuse modes) must not be counted as these.
	r.drainPools(ctx)
	key := fmt.Sprintf("%s-idle-%d", m.Key, m.VMMemoryMiB)
	cfg := filepath.Join(r.opts.Dir, key+".toml")
	if err := os.WriteFile(cfg, []byte(shimConfig(r.opts, m)), 0o644); err != nil {
		return fail(err)
	}
	r.configs[key] = cfg
	defer func() {
		if err := r.scc(context.WithoutCancel(ctx), "pool", "drain", "--config", cfg); err != nil {
			r.progressf("drain pool: %v\n", err)
		}
	}()
	if err := r.fillPoolWith(ctx, cfg, m.Pool); err != nil {
		return fail(err)
	}
	select {
	case <-time.After(r.opts.Settle):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	es, err := r.pool().List()
	if err != nil {
		return fail(err)
	}
	for _, e := range es {
		if !e.Ready {
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.Dir, "qemu.pid"))
		if err != nil {
			return fail(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fail(fmt.Errorf("pooled VM %s: bad pid file", e.ID))
		}
		roll, err := readRollup(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			return fail(err)
		}
		res.Sandboxes = append(res.Sandboxes, SandboxMemory{ID: e.ID, Processes: []ProcessMemory{{PID: pid, Name: "qemu", Rollup: roll}}})
	}
	s := res.Summary()
	r.progressf("  %-16s %d VMs, %s PSS each\n", m.Name, s.Sandboxes, formatBytes(s.PSS))
	return res
}
