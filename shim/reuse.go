package shim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/timestamppb"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/vtpm/swtpm"
	"github.com/sccontainers/scc/snapshot"
	"github.com/sccontainers/scc/snapshot/pool"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// Confidential-restore reuse (vm.start = "reuse"): a VM whose sandbox
// ended is cleaned in place by the guest's trusted monitor and kept in
// the pool, paused and detached like a pooled VM, for the next sandbox of
// its configuration. The pool holds such VMs under keys of their own
// (reusePrefix). docs/monitor.md describes the clean.

// reusePrefix starts the pool keys of reused VMs; template keys are hex.
const reusePrefix = "r"

// IsReusePoolKey reports whether the pooled VMs of key are VMs cleaned
// after a sandbox, not restored from a template.
func IsReusePoolKey(key string) bool { return strings.HasPrefix(key, reusePrefix) }

// tpmNextDirName is where the vTPM of a reused VM's next tenant starts,
// before it replaces the last one's in tpmDirName.
const tpmNextDirName = "tpm.next"

// initOnFreeParam makes the guest kernel zero every page it frees: what
// a tenant's processes and files used is zero once they are gone. The
// guest's monitor refuses to clean a guest booted without it.
const initOnFreeParam = "init_on_free=1"

// reuseState is what a sandbox whose VM is reused keeps of it.
type reuseState struct {
	cfg Config
	key string // pool key of the VMs like this one
	// generation is the number of tenants the VM served before this
	// sandbox, as its monitor counts them.
	generation uint64
	// vcpus and memoryMiB are the VM's size when it started: a VM that
	// grew since is not reused.
	vcpus, memoryMiB int
}

// reuseKey returns the pool key of the VMs that can serve a sandbox of vc
// after a clean; ok is false when this configuration's VMs are not
// reused.
func reuseKey(cfg Config, img guestFiles, vc vmm.Config) (string, bool) {
	if cfg.VM.Start != StartReuse || !img.snapshottable || len(vc.Net) > vc.HotplugPorts {
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
	return reusePrefix + poolKeyOf(key)[:len(poolKeyOf(key))-len(reusePrefix)], true
}

// recyclable is what reusing a VM takes of it (vmm/qemu.VM).
type recyclable interface {
	vmm.VM
	DetachDevices(ctx context.Context) error
	RenewPorts(ctx context.Context, tpmSocket string) error
	WaitPortOpen(ctx context.Context) error
	Release() error
}

var _ recyclable = (*qemu.VM)(nil)

// bootReusable boots the sandbox's VM so that it can be reused: its QEMU
// and vTPM are detached from this process, its network devices are
// hot-plugged (so that they can be removed again) and its directory
// records its id.
func (sb *sandbox) bootReusable(ctx context.Context, cfg Config, vc vmm.Config) error {
	if err := os.WriteFile(filepath.Join(sb.dir, pool.IDFile), []byte(vc.ID), 0o600); err != nil {
		return fmt.Errorf("record VM id: %w", err)
	}
	vc = hotplugNet(vc)
	if err := sb.boot(ctx, cfg, vc); err != nil {
		return err
	}
	return sb.addNetDevices(ctx, vc)
}

// addNetDevices adds the hot-plugged network devices of vc.
func (sb *sandbox) addNetDevices(ctx context.Context, vc vmm.Config) error {
	if len(vc.Net) == 0 {
		return nil
	}
	hp, ok := sb.vm.(vmm.NetHotplugger)
	if !ok {
		return fmt.Errorf("add network devices: %w", errdefs.ErrNotImplemented)
	}
	for i := range vc.Net {
		if err := hp.AddNetDevice(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// claimReused starts the sandbox's VM from a cleaned VM of its
// configuration. It returns false when none was ready or the one taken
// did not work; the sandbox directory is then absent again and nothing
// taken runs, so the caller boots a VM.
func (sb *sandbox) claimReused(ctx context.Context, cfg Config, vc vmm.Config) bool {
	p := vmPool(cfg)
	for attempt := 0; attempt < 3; attempt++ {
		e, err := p.Claim(sb.reuse.key, sb.dir)
		if errors.Is(err, pool.ErrEmpty) {
			return false
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("take reused VM")
			return false
		}
		err = sb.adoptReused(ctx, cfg, vc)
		if err == nil {
			return true
		}
		log.G(ctx).WithError(err).WithField(logVM, e.ID).Warn("reused VM unusable; discarding it")
		sb.stopVM(context.WithoutCancel(ctx))
		killVMProcesses(sb.dir)
		if err := removeStateDir(sb.dir); err != nil {
			log.G(ctx).WithError(err).Warn("remove reused VM")
			return false
		}
	}
	return false
}

// adoptReused takes over the QEMU and vTPM of a cleaned VM now in the
// sandbox's directory, resumes it and learns its generation.
func (sb *sandbox) adoptReused(ctx context.Context, cfg Config, vc vmm.Config) error {
	id := pool.ReadID(sb.dir)
	if id == "" {
		return fmt.Errorf("reused VM: no id in %s: %w", sb.dir, errdefs.ErrNotFound)
	}
	vc.ID = id // the name its QEMU runs under
	vc = hotplugNet(vc)
	if cfg.VM.TPM {
		tpm, err := adoptVTPM(filepath.Join(sb.dir, tpmDirName))
		if err != nil {
			return err
		}
		sb.tpm, vc.TPM = tpm, tpm.device()
	}
	vm, err := qemu.Driver{Binary: cfg.VM.QEMU, Detached: true}.Adopt(ctx, vc)
	if err != nil {
		return err
	}
	sb.vm = vm
	if err := sb.dial(); err != nil {
		return err
	}
	if err := vm.Resume(ctx); err != nil {
		return fmt.Errorf("resume reused VM: %w", err)
	}
	if err := sb.waitAgent(ctx, cfg.VM.BootTimeout.Duration); err != nil {
		return err
	}
	gen, err := sb.tellReused(ctx)
	if err != nil {
		return err
	}
	want, err := readGeneration(sb.dir)
	if err != nil {
		return err
	}
	if gen != want {
		return fmt.Errorf("reused VM %s reports generation %d, want %d: %w", id, gen, want, errdefs.ErrFailedPrecondition)
	}
	sb.reuse.generation = gen
	return sb.addNetDevices(ctx, vc)
}

// tellReused sets the guest's clock and mixes host entropy into its
// pool: the VM waited paused. It returns the VM's generation.
func (sb *sandbox) tellReused(ctx context.Context) (uint64, error) {
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return 0, fmt.Errorf("read entropy: %w", err)
	}
	resp, err := sb.agent.Reused(ctx, &agent.ReusedRequest{Entropy: entropy, Time: timestamppb.Now()})
	if err != nil {
		return 0, fmt.Errorf("reused VM: %w", fromAgent(err))
	}
	return resp.GetGeneration(), nil
}

// end ends the sandbox's VM: cleaned and kept for the next sandbox when
// it is reused and the clean succeeds, else stopped.
func (sb *sandbox) end(ctx context.Context) error {
	if sb.reuse != nil {
		start := time.Now()
		err := sb.recycle(ctx)
		if err == nil {
			log.G(ctx).WithField("generation", sb.reuse.generation+1).WithField("duration", time.Since(start)).Info("VM cleaned and kept for reuse")
			return nil
		}
		log.G(ctx).WithError(err).Warn("VM not reused: stopping it")
		if !errors.Is(err, errNotReusable) {
			sb.keepConsoleLog(ctx) // the guest's monitor says why a clean failed
		}
		// What recycle released is no longer the VM object's to stop.
		killVMProcesses(sb.dir)
	}
	return sb.stop(ctx)
}

// errNotReusable says why a VM cannot serve another sandbox; it is
// stopped instead.
var errNotReusable = errors.New("VM not reusable")

// recycle has the guest's monitor clean the sandbox's VM, whose
// containers must be gone, and moves it to the pool, paused, its QEMU and
// vTPM detached from this process. On error the VM is the caller's to
// stop.
func (sb *sandbox) recycle(ctx context.Context) error {
	r := sb.reuse
	vm, ok := sb.vm.(recyclable)
	if !ok {
		return fmt.Errorf("%w: the VMM cannot reuse VMs", errNotReusable)
	}
	if vmGone(sb) {
		return fmt.Errorf("%w: the VM exited", errNotReusable)
	}
	if rs, ok := sb.vm.(vmm.Resizer); ok {
		if vcpus, mem := rs.Size(); vcpus != r.vcpus || mem != r.memoryMiB {
			return fmt.Errorf("%w: it grew to %d vCPUs and %d MiB", errNotReusable, vcpus, mem)
		}
	}
	p := vmPool(r.cfg)
	if ready, _ := p.Ready(r.key); len(ready) >= r.cfg.Pool.Size {
		return fmt.Errorf("%w: the pool holds %d cleaned VMs of this configuration already (pool.size)", errNotReusable, len(ready))
	}
	if why := overBudget(r.cfg); why != "" {
		return fmt.Errorf("%w: %s", errNotReusable, why)
	}

	// The tenant's connections and devices go first.
	if sb.stopForward != nil {
		sb.stopForward()
		sb.stopForward = nil
	}
	sb.ports.close()
	sb.ports = nil
	if err := vm.DetachDevices(ctx); err != nil {
		return err
	}
	sb.diskMu.Lock()
	sb.disks = nil
	sb.diskMu.Unlock()

	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	var err error
	if _, err := sb.agent.Clean(ctx, &agent.CleanRequest{Nonce: nonce}); err != nil {
		return fmt.Errorf("clean guest: %w", fromAgent(err))
	}
	// The agent ends once the host hangs up; the monitor then cleans and
	// waits for the new ports.
	sb.client.Close()
	sb.client, sb.agent = nil, nil

	if err := sb.renewPorts(ctx, vm); err != nil {
		return err
	}
	// The monitor starts the next agent only once the guest is clean
	// (else it powers the guest off), and the agent opens its port when
	// it serves. The host does not connect: the sandbox that takes the
	// VM does, and learns the generation (a connection closed now could
	// lose the next one's first bytes when the guest sees it close).
	wctx, cancel := context.WithTimeout(ctx, r.cfg.VM.BootTimeout.Duration)
	err = vm.WaitPortOpen(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("agent after clean: %w", err)
	}
	if err := removeTenantFiles(sb.dir); err != nil {
		return err
	}
	if err := vm.Pause(ctx); err != nil {
		return err
	}
	if err := vm.Release(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sb.dir, memoryFile), []byte(strconv.Itoa(r.memoryMiB)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sb.dir, generationFile), []byte(strconv.FormatUint(r.generation+1, 10)), 0o600); err != nil {
		return err
	}
	// Sandboxes that end together must not fill the pool past its size.
	unlock, _, err := p.LockFill(r.key, true)
	if err != nil {
		return err
	}
	defer unlock()
	if ready, _ := p.Ready(r.key); len(ready) >= r.cfg.Pool.Size {
		return fmt.Errorf("%w: the pool filled up during the clean", errNotReusable)
	}
	if _, err := p.Put(r.key, sb.dir); err != nil {
		return err
	}
	// QEMU and the vTPM are the pool's now.
	sb.vm, sb.tpm = nil, nil
	return nil
}

// renewPorts has QEMU replace the VM's virtio-serial ports, the vTPM's
// connected to a new vTPM, which replaces the last tenant's.
func (sb *sandbox) renewPorts(ctx context.Context, vm recyclable) error {
	if sb.tpm == nil {
		return vm.RenewPorts(ctx, "")
	}
	next, err := startVTPMIn(ctx, filepath.Join(sb.dir, tpmNextDirName), true)
	if err != nil {
		return err
	}
	if err := vm.RenewPorts(ctx, next.device().Socket); err != nil {
		next.Stop()
		return err
	}
	// QEMU talks to the new vTPM only: the old one goes, and the new one
	// takes its place (it follows its directory).
	if err := sb.tpm.Stop(); err != nil {
		next.Stop()
		return fmt.Errorf("stop last tenant's vTPM: %w", err)
	}
	cur := filepath.Join(sb.dir, tpmDirName)
	if err := os.RemoveAll(cur); err != nil {
		next.Stop()
		return err
	}
	if err := os.Rename(next.dir, cur); err != nil {
		next.Stop()
		return err
	}
	next.dir = cur
	sb.tpm = next
	return nil
}

// generationFile, in a pooled reused VM's directory, holds the
// generation the VM's next tenant must find: one more than its last.
const generationFile = "generation"

// readGeneration returns the generation recorded in a reused VM's
// directory; it is at least 1.
func readGeneration(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, generationFile))
	if err != nil {
		return 0, fmt.Errorf("reused VM: %w", err)
	}
	g, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || g == 0 {
		return 0, fmt.Errorf("reused VM: bad generation %q", b)
	}
	return g, nil
}

// vmFiles are the entries of a VM's state directory that are the VM's,
// not its sandbox's: the rest goes before the VM serves another sandbox.
var vmFiles = map[string]bool{
	vmm.AgentSocketName: true, vmm.ForwardSocketName: true, vmm.ConsoleLogName: true,
	qemu.QMPSocketName: true, qemu.PidFileName: true, qemu.LogName: true,
	pool.IDFile: true, memoryFile: true, generationFile: true, tpmDirName: true, "shared": true,
}

// removeTenantFiles removes the sandbox's files from a VM's state
// directory; the shared directory (QEMU exports it by descriptor) must
// hold nothing.
func removeTenantFiles(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if vmFiles[de.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	left, err := os.ReadDir(filepath.Join(dir, "shared"))
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%w: the shared directory still holds %d entries", errNotReusable, len(left))
	}
	return nil
}

// killVMProcesses kills the QEMU and vTPMs of the VM whose state is in
// dir, if they run: detached, they would outlive any process.
func killVMProcesses(dir string) {
	if pid := vmPid(dir); pid > 0 {
		killAndWait(pid, 5*time.Second)
	}
	for _, d := range []string{tpmDirName, tpmNextDirName} {
		if pid := swtpm.ProcessOf(filepath.Join(dir, d)); pid > 0 {
			killAndWait(pid, 5*time.Second)
		}
	}
}
