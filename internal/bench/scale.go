package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// scaleOut starts N containers at once (`ctr run --rm ... /bin/true`
// each) and measures the time until all of them exited, for every N and
// mode; the modes alternate at each point, and the runs go over all N in
// turn. A failed batch is recorded and the point tried again in the next
// run; a batch that times out stops its mode at that N and above, since
// each further try would cost the whole timeout. No run starts that would
// likely end past ScaleBudget.
// batchFunc runs one batch of n containers of mode m.
type batchFunc func(ctx context.Context, m Mode, n, run int) (time.Duration, error)

func (r *runner) scaleOut(ctx context.Context, batch batchFunc) (_ []ScaleSeries, stopped string) {
	modes := r.sandboxModes(r.opts.ScaleVMMemoryMiB)
	out := make([]ScaleSeries, len(modes))
	for i, m := range modes {
		out[i].Mode = m
		for _, n := range r.opts.ScaleN {
			out[i].Points = append(out[i].Points, ScalePoint{N: n})
		}
	}
	// timedOut[i] is the smallest N at which mode i timed out, or 0.
	timedOut := make([]int, len(modes))
	began := time.Now()
	var longest time.Duration
	for run := 1; run <= r.opts.Runs && ctx.Err() == nil; run++ {
		if spent := time.Since(began); run > 1 && spent+longest > r.opts.ScaleBudget {
			stopped = fmt.Sprintf("Stopped after %d of %d runs: the next would have ended past the time budget of %v.", run-1, r.opts.Runs, r.opts.ScaleBudget)
			r.progressf("  %s\n", stopped)
			break
		}
		runBegan := time.Now()
		for j, n := range r.opts.ScaleN {
			for i, m := range modes {
				if ctx.Err() != nil || (timedOut[i] > 0 && n >= timedOut[i]) {
					continue
				}
				p := &out[i].Points[j]
				t, err := batch(ctx, m, n, run)
				if err != nil {
					p.Failures = append(p.Failures, err.Error())
					r.progressf("  %-16s N=%-3d run %d/%d  failed: %v\n", m.Name, n, run, r.opts.Runs, err)
					if errors.Is(err, context.DeadlineExceeded) {
						timedOut[i] = n
					}
					// What the failed batch left must not weigh on the
					// next measurements.
					r.removeContainers(context.WithoutCancel(ctx))
					continue
				}
				p.Samples = append(p.Samples, t)
				r.progressf("  %-16s N=%-3d run %d/%d  %v\n", m.Name, n, run, r.opts.Runs, t.Round(time.Millisecond))
			}
		}
		longest = max(longest, time.Since(runBegan))
	}
	for i := range out {
		if timedOut[i] == 0 {
			continue
		}
		for j := range out[i].Points {
			if p := &out[i].Points[j]; p.N >= timedOut[i] && p.Skipped == "" {
				p.Skipped = fmt.Sprintf("not tried again after a batch of %d timed out (%v)", timedOut[i], r.opts.ScaleTimeout)
			}
		}
	}
	return out, stopped
}

// batch runs n containers of mode m at once and returns the time until
// the last one exited. The error of a batch that ran out of time wraps
// context.DeadlineExceeded.
func (r *runner) batch(ctx context.Context, m Mode, n, run int) (time.Duration, error) {
	bctx, cancel := context.WithTimeout(ctx, r.opts.ScaleTimeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	began := time.Now()
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("scale-%s-%d-%d-%d", m.Key, n, run, k)
			_, errs[k] = r.ctrRun(bctx, m, id, []string{"--rm"}, "/bin/true")
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if ctx.Err() == nil && bctx.Err() != nil {
		return 0, fmt.Errorf("batch of %d: %w after %v", n, context.DeadlineExceeded, r.opts.ScaleTimeout)
	}
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return 0, fmt.Errorf("%d of %d containers failed: %w", failed, n, first)
	}
	return elapsed, nil
}
