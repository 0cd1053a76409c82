package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type call struct {
	mode   string
	n, run int
}

// fakeBatches answers scaleOut's batches from fail, which says how a
// (mode, n, run) batch ends, and records the calls.
type fakeBatches struct {
	calls []call
	fail  func(c call) error
	sleep time.Duration
}

func (f *fakeBatches) batch(ctx context.Context, m Mode, n, run int) (time.Duration, error) {
	c := call{m.Key, n, run}
	f.calls = append(f.calls, c)
	time.Sleep(f.sleep)
	if f.fail != nil {
		if err := f.fail(c); err != nil {
			return 0, err
		}
	}
	return time.Duration(n) * time.Millisecond, nil
}

func scaleRunner(runs int, ns []int) *runner {
	return &runner{opts: Options{Runs: runs, ScaleN: ns, ScaleVMMemoryMiB: 256, ScaleTimeout: time.Minute, ScaleBudget: time.Hour}}
}

func TestScaleOutAlternates(t *testing.T) {
	f := &fakeBatches{}
	out, stopped := scaleRunner(2, []int{1, 4}).scaleOut(context.Background(), f.batch)
	var got []string
	for _, c := range f.calls {
		got = append(got, fmt.Sprintf("%s/%d/%d", c.mode, c.n, c.run))
	}
	want := "runc/1/1 scc-cold/1/1 scc-restore/1/1 runc/4/1 scc-cold/4/1 scc-restore/4/1 " +
		"runc/1/2 scc-cold/1/2 scc-restore/1/2 runc/4/2 scc-cold/4/2 scc-restore/4/2"
	if strings.Join(got, " ") != want {
		t.Errorf("batches\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if stopped != "" {
		t.Errorf("stopped %q without a budget", stopped)
	}
	if p := out[1].Points[1]; p.N != 4 || len(p.Samples) != 2 || p.Samples[0] != 4*time.Millisecond {
		t.Errorf("scc-cold N=4: %+v", p)
	}
}

func TestScaleOutFailures(t *testing.T) {
	f := &fakeBatches{fail: func(c call) error {
		switch {
		case c.mode == ModeSCCCold && c.n == 2 && c.run == 1:
			return errors.New("1 of 2 containers failed: ping agent")
		case c.mode == ModeSCCRestore && c.n == 2:
			return fmt.Errorf("batch of 2: %w after 1m0s", context.DeadlineExceeded)
		}
		return nil
	}}
	out, _ := scaleRunner(3, []int{1, 2, 4}).scaleOut(context.Background(), f.batch)
	cold, restore := out[1], out[2]

	// An ordinary failure is recorded and the point tried again.
	if p := cold.Points[1]; len(p.Failures) != 1 || len(p.Samples) != 2 || p.Skipped != "" {
		t.Errorf("scc-cold N=2 after one failure: %+v", p)
	}
	if p := cold.Points[2]; len(p.Samples) != 3 {
		t.Errorf("scc-cold N=4 not measured after a failure at N=2: %+v", p)
	}
	// A timeout stops the mode at that N and above, not below.
	for _, c := range f.calls {
		if c.mode == ModeSCCRestore && c.n >= 2 && c.run > 1 || c.mode == ModeSCCRestore && c.n == 4 {
			t.Errorf("batch %+v tried after scc-restore timed out at N=2", c)
		}
	}
	if p := restore.Points[0]; len(p.Samples) != 3 {
		t.Errorf("scc-restore N=1: %+v", p)
	}
	for _, p := range restore.Points[1:] {
		if !strings.Contains(p.Skipped, "timed out") || len(p.Samples) != 0 {
			t.Errorf("scc-restore N=%d: %+v", p.N, p)
		}
	}
}

func TestScaleOutBudget(t *testing.T) {
	f := &fakeBatches{sleep: 5 * time.Millisecond}
	r := scaleRunner(3, []int{1, 2})
	r.opts.ScaleBudget = 10 * time.Millisecond // less than one run of six batches
	out, stopped := r.scaleOut(context.Background(), f.batch)
	if len(f.calls) != 6 {
		t.Errorf("%d batches, want one run of 6", len(f.calls))
	}
	if !strings.Contains(stopped, "after 1 of 3 runs") {
		t.Errorf("stopped = %q", stopped)
	}
	if n := len(out[0].Points[0].Samples); n != 1 {
		t.Errorf("runc N=1 has %d samples, want 1", n)
	}
}

func TestScaleOutCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeBatches{fail: func(c call) error {
		if c.mode == ModeSCCCold {
			cancel()
			return context.Canceled
		}
		return nil
	}}
	scaleRunner(5, []int{1, 2, 4}).scaleOut(ctx, f.batch)
	if len(f.calls) != 2 {
		t.Errorf("%d batches after cancel, want 2: %+v", len(f.calls), f.calls)
	}
}

func TestCtrError(t *testing.T) {
	in := "time=\"2026-11-25T13:58:24Z\" level=warning msg=\"DEPRECATION: cgroup v1\"\nctr: failed to create shim task: ping agent: ttrpc: closed\n"
	if got := ctrError(in); got != "ctr: failed to create shim task: ping agent: ttrpc: closed" {
		t.Errorf("ctrError = %q", got)
	}
}
