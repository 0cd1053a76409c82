package bench

import (
	"context"
	"fmt"
	"time"
)

// start measures `ctr run --rm <image> /bin/true` in every mode, one run
// of each mode in turn. The first round is not measured: it warms the
// page cache and containerd, and is kept as Series.First.
func (r *runner) start(ctx context.Context) ([]Series, error) {
	modes := r.modes(r.opts.StartVMMemoryMiB)
	series := make([]Series, len(modes))
	for i, m := range modes {
		series[i].Mode = m
	}
	for run := 0; run <= r.opts.Runs; run++ {
		for i, m := range modes {
			id := fmt.Sprintf("start-%s-%d", m.Key, run)
			switch {
			case m.Reuse && run > 0:
				// The first run booted the VM every later one reuses.
				if err := r.waitReused(ctx); err != nil {
					return nil, fmt.Errorf("start %s, run %d: %w", m.Name, run, err)
				}
			case m.Pool > 0 && !m.Reuse:
				if err := r.fillPool(ctx, m); err != nil {
					return nil, fmt.Errorf("start %s, run %d: %w", m.Name, run, err)
				}
			}
			t, err := r.ctrRun(ctx, m, id, []string{"--rm"}, "/bin/true")
			if err != nil {
				return nil, fmt.Errorf("start %s, run %d: %w", m.Name, run, err)
			}
			if run == 0 {
				series[i].First = t
				r.progressf("  %-16s first run   %v (not measured)\n", m.Name, t.Round(time.Millisecond))
				continue
			}
			series[i].Samples = append(series[i].Samples, t)
			r.progressf("  %-16s run %d/%d   %v\n", m.Name, run, r.opts.Runs, t.Round(time.Millisecond))
		}
	}
	return series, nil
}
