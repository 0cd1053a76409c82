// Package bench is scc's performance evaluation: start latency (cold and
// warm), scale-out and host memory per idle sandbox, of scc against runc
// on a private containerd. Modes are measured alternately within one run
// so that machine drift affects all alike.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/ocilayout"
	"github.com/sccontainers/scc/shim"
	"github.com/sccontainers/scc/snapshot/pool"
)

// Phases of a run.
const (
	PhaseStart  = "start"
	PhaseScale  = "scale"
	PhaseMemory = "memory"
	// PhaseImage compares a container whose image the host shares, one
	// whose encrypted image the guest pulls, and one whose split image
	// comes partly from the host's layer cache (internal/bench/image.go).
	PhaseImage = "image"
)

// Options configure a benchmark run.
type Options struct {
	Dir      string // private containerd, configurations, templates; removed at the end
	BinDir   string // containerd, ctr, containerd-shim-runc-v2
	ShimDir  string // containerd-shim-scc-v2 and scc
	GuestDir string // scc guest image
	Busybox  string // static busybox for the image
	Registry string // distribution's registry binary, for PhaseImage
	QEMU     string // QEMU binary the shim runs (for the machine description)
	Version  string // scc version, for the report

	// Phases selects what to measure (PhaseStart, PhaseScale,
	// PhaseMemory); all when empty.
	Phases []string
	// Runs is the number of measured samples per mode and point.
	Runs int
	// StartVMMemoryMiB sizes the VMs of the start measurements.
	StartVMMemoryMiB int
	// ScaleVMMemoryMiB sizes the VMs of scale-out and memory.
	ScaleVMMemoryMiB int
	// ScaleN are the numbers of containers started at once.
	ScaleN []int
	// ScaleTimeout bounds one batch; a mode whose batch times out is not
	// measured again at that N or larger.
	ScaleTimeout time.Duration
	// ScaleBudget bounds the scale-out phase: no run over all N starts
	// that would likely end past it.
	ScaleBudget time.Duration
	// IdleSandboxes is how many idle containers per mode the memory
	// phase starts, and Settle how long it lets them settle.
	IdleSandboxes int
	Settle        time.Duration
	// MemoryBudget is the host memory the "fit" figure divides.
	MemoryBudget uint64
	// PoolSize is the number of ready VMs the pool mode keeps during the
	// start measurements; 0 leaves the pool mode out.
	PoolSize int
	// NoReuse leaves the reuse mode (confidential-restore reuse: the
	// VM of the previous run's sandbox, cleaned in place) out of the
	// start measurements.
	NoReuse bool
	// KernelParams are added to the guest kernel command line of every
	// scc mode (the shim's vm.kernel_params), to measure their effect.
	KernelParams []string

	Progress io.Writer
}

func (o Options) validate() error {
	switch {
	case o.Runs < 1:
		return errors.New("runs must be at least 1")
	case o.PoolSize < 0:
		return errors.New("pool size must not be negative")
	case o.StartVMMemoryMiB < 64 || o.ScaleVMMemoryMiB < 64:
		return errors.New("VM memory must be at least 64 MiB")
	case !filepath.IsAbs(o.Dir):
		return fmt.Errorf("bench dir %q must be absolute", o.Dir)
	case o.phase(PhaseImage) && o.Registry == "":
		return errors.New("the image phase needs the registry binary (make tools)")
	case o.BinDir == "" || o.GuestDir == "" || o.ShimDir == "":
		return errors.New("containerd, shim and guest directories must be set")
	}
	for _, n := range o.ScaleN {
		if n < 1 {
			return fmt.Errorf("scale-out N must be positive, not %d", n)
		}
	}
	for _, p := range o.Phases {
		switch p {
		case PhaseStart, PhaseScale, PhaseMemory, PhaseImage:
		default:
			return fmt.Errorf("unknown phase %q", p)
		}
	}
	return nil
}

func (o Options) phase(p string) bool {
	if len(o.Phases) == 0 {
		return true
	}
	for _, q := range o.Phases {
		if q == p {
			return true
		}
	}
	return false
}

const imageRef = "scc.local/busybox:latest"

// runner holds one run's containerd and shim configurations.
type runner struct {
	opts    Options
	d       *ctrd.Daemon
	configs map[string]string // mode key and VM memory -> shim config path
}

// Run measures the selected phases and returns the report. Everything it
// starts (containerd, containers, VMs, templates) is gone when it returns.
func Run(ctx context.Context, opts Options) (_ *Report, retErr error) {
	// The shims and containerd run elsewhere: relative paths would not
	// resolve there.
	for _, p := range []*string{&opts.BinDir, &opts.ShimDir, &opts.GuestDir, &opts.Busybox, &opts.Registry} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	rep := &Report{
		Machine: describeMachine(ctx, opts),
		Settings: Settings{
			Runs:             opts.Runs,
			Command:          "ctr run --rm <busybox image> /bin/true",
			StartVMMemoryMiB: opts.StartVMMemoryMiB,
			ScaleVMMemoryMiB: opts.ScaleVMMemoryMiB,
			ScaleN:           opts.ScaleN,
			ScaleTimeout:     opts.ScaleTimeout,
			ScaleBudget:      opts.ScaleBudget,
			IdleSandboxes:    opts.IdleSandboxes,
			Settle:           opts.Settle,
			MemoryBudget:     opts.MemoryBudget,
			KernelParams:     opts.KernelParams,
		},
		Unavailable: UnavailableModes,
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create bench dir: %w", err)
	}
	r := &runner{opts: opts, configs: make(map[string]string)}
	defer func() {
		r.drainPools(context.WithoutCancel(ctx))
		if err := ctrd.Clean(opts.Dir); err != nil && retErr == nil {
			retErr = fmt.Errorf("remove bench dir: %w", err)
		}
	}()

	// Templates are made before containerd runs: their making is not
	// what is measured, and would compete with it for the CPUs.
	var mems []int
	if opts.phase(PhaseStart) {
		mems = append(mems, opts.StartVMMemoryMiB)
	}
	if (opts.phase(PhaseScale) && len(opts.ScaleN) > 0) || (opts.phase(PhaseMemory) && opts.IdleSandboxes > 0) {
		if len(mems) == 0 || mems[0] != opts.ScaleVMMemoryMiB {
			mems = append(mems, opts.ScaleVMMemoryMiB)
		}
	}
	for _, mem := range mems {
		t, err := r.prepare(ctx, mem)
		if err != nil {
			return nil, err
		}
		rep.Templates = append(rep.Templates, t)
	}

	d, err := ctrd.Start(ctx, ctrd.Options{Dir: filepath.Join(opts.Dir, "c"), BinDir: opts.BinDir, ShimDir: opts.ShimDir})
	if err != nil {
		return nil, err
	}
	r.d = d
	defer func() {
		r.removeContainers(context.WithoutCancel(ctx))
		d.Stop(context.WithoutCancel(ctx))
	}()
	if err := r.importImage(ctx); err != nil {
		return nil, err
	}

	if opts.phase(PhaseStart) {
		r.progressf("start: %s, %d runs per mode, modes alternating\n", rep.Settings.Command, opts.Runs)
		if rep.Start, err = r.start(ctx); err != nil {
			return nil, err
		}
	}
	if opts.phase(PhaseScale) && len(opts.ScaleN) > 0 {
		r.progressf("scale-out: N containers at once, N in %v, %d runs, %d MiB VMs\n", opts.ScaleN, opts.Runs, opts.ScaleVMMemoryMiB)
		rep.ScaleOut, rep.ScaleOutStopped = r.scaleOut(ctx, r.batch)
	}
	if opts.phase(PhaseMemory) && opts.IdleSandboxes > 0 {
		r.progressf("memory: %d idle sandboxes per mode, PSS after %v\n", opts.IdleSandboxes, opts.Settle)
		rep.Memory = r.memory(ctx)
		if opts.PoolSize > 0 {
			r.progressf("memory: %d idle pooled VMs, PSS after %v\n", opts.IdleSandboxes, opts.Settle)
			rep.PooledVMs = r.pooledMemory(ctx)
		}
	}
	if opts.phase(PhaseImage) {
		r.progressf("image: (a) shared from the host, (b) encrypted and pulled in the guest, (c) split with a warm host cache; %d runs per mode, modes alternating\n", opts.Runs)
		if rep.Image, err = r.imagePhase(ctx); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Elapsed = time.Since(began).Round(time.Millisecond)
	return rep, nil
}

// modes returns runc and the scc modes with VMs of mem MiB: cold boot,
// restore, and, with a pool size, pool.
func (r *runner) modes(mem int) []Mode {
	ms := []Mode{
		{Key: ModeRunc, Name: "runc", Runtime: "io.containerd.runc.v2"},
		{Key: ModeSCCCold, Name: "scc (cold boot)", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1},
		{Key: ModeSCCRestore, Name: "scc (restore)", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1, Template: true},
	}
	if r.opts.PoolSize > 0 {
		ms = append(ms, Mode{Key: ModeSCCPool, Name: "scc (pool)", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1, Template: true, Pool: r.opts.PoolSize})
	}
	if !r.opts.NoReuse {
		ms = append(ms, Mode{Key: ModeSCCReuse, Name: "scc (reuse)", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1, Pool: 1, Reuse: true})
	}
	return ms
}

// sandboxModes are the modes whose sandboxes scale-out and memory start
// many of at once: a pool of a few VMs serves only the first few of them,
// so the pool is measured by start and by the memory of its idle VMs.
func (r *runner) sandboxModes(mem int) []Mode {
	var ms []Mode
	for _, m := range r.modes(mem) {
		if m.Pool == 0 && !m.Reuse {
			ms = append(ms, m)
		}
	}
	return ms
}

func configKey(m Mode) string { return fmt.Sprintf("%s-%d", m.Key, m.VMMemoryMiB) }

// prepare writes the shim configurations of VMs of mem MiB and makes the
// template the restore mode uses.
func (r *runner) prepare(ctx context.Context, mem int) (TemplateBuild, error) {
	for _, m := range r.modes(mem)[1:] {
		p := filepath.Join(r.opts.Dir, configKey(m)+".toml")
		if err := os.WriteFile(p, []byte(shimConfig(r.opts, m)), 0o644); err != nil {
			return TemplateBuild{}, fmt.Errorf("write shim config: %w", err)
		}
		r.configs[configKey(m)] = p
	}
	restore := r.configs[configKey(r.modes(mem)[2])]
	r.progressf("template: %d MiB VM (boot, save)\n", mem)
	began := time.Now()
	if err := r.scc(ctx, "snapshot", "create", "--config", restore); err != nil {
		return TemplateBuild{}, fmt.Errorf("create VM template: %w", err)
	}
	t := TemplateBuild{VMMemoryMiB: mem, Elapsed: time.Since(began).Round(time.Millisecond)}
	r.progressf("template: %d MiB VM made in %v\n", mem, t.Elapsed)
	return t, nil
}

// scc runs the scc command next to the shim.
func (r *runner) scc(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, filepath.Join(r.opts.ShimDir, "scc"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scc %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// waitReused waits until the pool holds a cleaned VM of a reuse mode:
// the previous run's, once its sandbox's end cleaned it. The measurement
// is of a start from a cleaned VM, not of one that races the clean.
func (r *runner) waitReused(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		es, err := r.pool().List()
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Ready && shim.IsReusePoolKey(e.Key) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no cleaned VM in the pool 2 minutes after the last run (see the shim's log: the clean failed)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fillPool fills the pool of mode m's configuration and waits until it is
// full: the measurement is of a start from a warm pool, not of one that
// races its refill.
func (r *runner) fillPool(ctx context.Context, m Mode) error {
	return r.fillPoolWith(ctx, r.configs[configKey(m)], m.Pool)
}

func (r *runner) pool() pool.Pool { return pool.Pool{Dir: filepath.Join(r.opts.Dir, "run", "pool")} }

// fillPoolWith fills the pool of shim configuration cfg, of size n.
func (r *runner) fillPoolWith(ctx context.Context, cfg string, n int) error {
	if err := r.scc(ctx, "pool", "fill", "--config", cfg); err != nil {
		return err
	}
	p := r.pool()
	m := Mode{Pool: n}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// Fills race: the shim's refill may hold the lock the fill above
		// gave up on.
		es, err := p.List()
		if err != nil {
			return err
		}
		ready := 0
		for _, e := range es {
			if e.Ready {
				ready++
			}
		}
		if ready >= m.Pool {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool has %d of %d VMs ready after 2 minutes", ready, m.Pool)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drainPools stops the pooled VMs of the run.
func (r *runner) drainPools(ctx context.Context) {
	for key, cfg := range r.configs {
		if strings.HasPrefix(key, ModeSCCPool) || strings.HasPrefix(key, ModeSCCReuse) {
			if err := r.scc(ctx, "pool", "drain", "--config", cfg); err != nil {
				r.progressf("drain pool: %v\n", err)
			}
		}
	}
}

// shimConfig is the scc shim configuration of an scc mode. Templates are
// never made in the background: that would load the machine during the
// measurements.
func shimConfig(opts Options, m Mode) string {
	var params []string
	for _, p := range opts.KernelParams {
		params = append(params, strconv.Quote(p))
	}
	start := "auto"
	if m.Reuse {
		start = "reuse"
	}
	return fmt.Sprintf(`state_dir = %q
guest_dir = %q

[vm]
start = %q
vcpus = %d
memory_mib = %d
log_dir = %q
kernel_params = [%s]

[snapshot]
enabled = %t
auto_create = false
dir = %q

[pool]
size = %d
`, filepath.Join(opts.Dir, "run"), opts.GuestDir, start, m.VCPUs, m.VMMemoryMiB, filepath.Join(opts.Dir, "logs"), strings.Join(params, ", "),
		m.Template, filepath.Join(opts.Dir, "snapshots"), m.Pool)
}

func (r *runner) importImage(ctx context.Context) error {
	var img bytes.Buffer
	if err := ocilayout.WriteBusybox(&img, ocilayout.BusyboxOptions{Busybox: r.opts.Busybox, Ref: imageRef}); err != nil {
		return fmt.Errorf("write busybox image: %w", err)
	}
	imp := r.d.Ctr(ctx, "images", "import", "-")
	imp.Stdin = &img
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("import image: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// ctrRun runs `ctr run` of the image in mode m as container id, with
// extra flags before the image and the command after it, and returns its
// wall time.
func (r *runner) ctrRun(ctx context.Context, m Mode, id string, flags []string, command ...string) (time.Duration, error) {
	return r.ctrRunImage(ctx, m, imageRef, id, flags, command...)
}

// ctrRunImage is ctrRun of another image.
func (r *runner) ctrRunImage(ctx context.Context, m Mode, image, id string, flags []string, command ...string) (time.Duration, error) {
	args := append([]string{"run"}, flags...)
	args = append(args, "--runtime", m.Runtime)
	if m.Key != ModeRunc {
		args = append(args, "--runtime-config-path", r.configs[configKey(m)])
	}
	args = append(append(args, image, id), command...)
	cmd := r.d.Ctr(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	err := cmd.Run()
	elapsed := time.Since(began)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("ctr run %s: %w", id, ctx.Err())
		}
		return 0, fmt.Errorf("ctr run %s: %w: %s", id, err, ctrError(stderr.String()))
	}
	return elapsed, nil
}

// ctrError keeps what ctr said about a failure, without the warnings
// containerd's client logs on every command (cgroup v1 deprecation).
func ctrError(stderr string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.HasPrefix(l, "time=") && strings.Contains(l, "level=warning") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}

// removeContainers kills and removes every container of the private
// containerd, so a failed or interrupted measurement leaves no VM behind.
func (r *runner) removeContainers(ctx context.Context) {
	if r.d == nil {
		return // no containerd, no container
	}
	out, err := r.d.Ctr(ctx, "containers", "list", "--quiet").Output()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, id := range strings.Fields(string(out)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A task that is already gone makes the first command fail;
			// the container must still go.
			r.d.Ctr(ctx, "tasks", "delete", "--force", id).Run()
			r.d.Ctr(ctx, "containers", "delete", id).Run()
		}()
	}
	wg.Wait()
}

func (r *runner) progressf(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, format, args...)
	}
}
