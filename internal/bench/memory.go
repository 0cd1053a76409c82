package bench

import (
	"context"
	"fmt"
	"time"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// memory starts IdleSandboxes idle containers (`sleep`) per mode, lets
// them settle, measures the PSS of each sandbox's host processes and
// removes them before the next mode.
func (r *runner) memory(ctx context.Context) []MemoryResult {
	var out []MemoryResult
	for _, m := range r.modes(r.opts.ScaleVMMemoryMiB) {
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
