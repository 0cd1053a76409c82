package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/timestamppb"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/snapshot"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// templateLayout changes whenever the VM's device layout changes in a way
// the key's other fields do not show, so old templates stop matching.
const templateLayout = 4

// templateKey is everything that must match between a template and the
// VMs restored from it. Paths that differ per VM (state directory, shared
// directory) are left out: QEMU does not save them.
type templateKey struct {
	Layout        int
	KernelSHA256  string
	InitrdSHA256  string
	Cmdline       string
	Firmware      string
	VCPUs         int
	MemoryMiB     int
	MaxVCPUs      int
	MaxMemoryMiB  int
	Accel         vmm.Accel
	QEMU          string
	QEMUSize      int64
	QEMUModTime   time.Time
	AgentPort     string
	ForwardPort   string
	HotplugPorts  int
	SharedTag     string
	SharedGuestAt string
	TPM           bool
	VMGenID       bool
}

func newTemplateKey(cfg Config, img guestFiles, vc vmm.Config) (templateKey, error) {
	acc, _, err := vmm.ResolveAccel(vc.Accel)
	if err != nil {
		return templateKey{}, err
	}
	bin, err := exec.LookPath(cfg.VM.QEMU)
	if err != nil {
		return templateKey{}, fmt.Errorf("find qemu: %w", err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return templateKey{}, fmt.Errorf("find qemu: %w", err)
	}
	return templateKey{
		Layout:        templateLayout,
		KernelSHA256:  img.kernelSHA256,
		InitrdSHA256:  img.initrdSHA256,
		Cmdline:       vc.Cmdline,
		Firmware:      vc.Firmware,
		VCPUs:         vc.VCPUs,
		MemoryMiB:     vc.MemoryMiB,
		MaxVCPUs:      vc.MaxVCPUs,
		MaxMemoryMiB:  vc.MaxMemoryMiB,
		Accel:         acc,
		QEMU:          bin,
		QEMUSize:      fi.Size(),
		QEMUModTime:   fi.ModTime().UTC(),
		AgentPort:     vc.AgentPort,
		ForwardPort:   vc.ForwardPort,
		HotplugPorts:  vc.HotplugPorts,
		SharedTag:     agent.SharedTag,
		SharedGuestAt: agent.GuestSharedDir,
		TPM:           cfg.VM.TPM,
		VMGenID:       vc.VMGenID,
	}, nil
}

// lookupTemplate finds the template a sandbox of this configuration can
// be restored from.
func lookupTemplate(ctx context.Context, cfg Config, img guestFiles, vc vmm.Config) (snapshot.Template, bool) {
	if !cfg.Snapshot.Enabled || !img.snapshottable || len(vc.Net) > vc.HotplugPorts {
		return snapshot.Template{}, false
	}
	k, err := newTemplateKey(cfg, img, vc)
	if err != nil {
		log.G(ctx).WithError(err).Warn("template key")
		return snapshot.Template{}, false
	}
	key, err := snapshot.Key(k)
	if err != nil {
		return snapshot.Template{}, false
	}
	return snapshot.Store{Dir: cfg.Snapshot.Dir}.Lookup(key)
}

func removeTemplate(cfg Config, key string) {
	snapshot.Store{Dir: cfg.Snapshot.Dir}.Remove(key)
}

// restore starts the VM from a template's saved state. The agent in the
// template waits for a host connection, so the connection is made while
// the VM is still paused; after Resume the agent is told it was restored,
// before anything else, so it stops sharing randomness and time with the
// template's other clones, and its monitor records the restore (the
// template's digest and a nonce of this restore) in the VM's own vTPM.
func (sb *sandbox) restore(ctx context.Context, cfg Config, vc vmm.Config, tmpl snapshot.Template) error {
	vc = restoredConfig(hotplugNet(vc), tmpl)
	vm, err := newVM(cfg, vc, false)
	if err != nil {
		return fmt.Errorf("configure VM: %w", err)
	}
	sb.vm = vm
	s, ok := vm.(vmm.Snapshotter)
	if !ok {
		return fmt.Errorf("restore: VMM cannot restore snapshots: %w", errdefs.ErrNotImplemented)
	}
	if err := s.Restore(ctx, tmpl.StatePath()); err != nil {
		return &templateLoadError{err}
	}
	return sb.resumeRestored(ctx, cfg, vc, tmpl)
}

// restoredConfig is vc for a VM restored from tmpl: it maps the
// template's memory file, if the template has one.
func restoredConfig(vc vmm.Config, tmpl snapshot.Template) vmm.Config {
	if tmpl.HasMemory {
		vc.Memory = vmm.MemoryFile{File: tmpl.MemoryPath()}
	}
	return vc
}

// hotplugNet marks vc's network devices as added after the VM runs: a
// template has none, so a VM restored from one gets them through its
// hotplug ports.
func hotplugNet(vc vmm.Config) vmm.Config {
	vc.Net = append([]vmm.NetDevice(nil), vc.Net...)
	for i := range vc.Net {
		vc.Net[i].Hotplug = true
	}
	return vc
}

// resumeRestored connects to the agent of a VM restored from template
// tmpl and still paused, resumes it, tells the agent it was restored and
// adds its network devices.
func (sb *sandbox) resumeRestored(ctx context.Context, cfg Config, vc vmm.Config, tmpl snapshot.Template) error {
	vm := sb.vm
	if err := sb.dial(); err != nil {
		return err
	}
	if err := vm.Resume(ctx); err != nil {
		return fmt.Errorf("resume restored VM: %w", err)
	}
	if err := sb.waitAgent(ctx, cfg.VM.BootTimeout.Duration); err != nil {
		return err
	}
	// Entropy is secret, the nonce is recorded in the TPM's log.
	entropy, nonce := make([]byte, 64), make([]byte, 32)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("read entropy: %w", err)
	}
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("read entropy: %w", err)
	}
	digest, _ := hex.DecodeString(tmpl.Digest)
	req := &agent.RestoredRequest{Entropy: entropy, Time: timestamppb.Now(), SnapshotDigest: digest, Nonce: nonce}
	if _, err := sb.agent.Restored(ctx, req); err != nil {
		return fmt.Errorf("reseed restored agent: %w", fromAgent(err))
	}
	if len(vc.Net) > 0 {
		hp, ok := vm.(vmm.NetHotplugger)
		if !ok {
			return fmt.Errorf("restore: VMM cannot add network devices: %w", errdefs.ErrNotImplemented)
		}
		for i := range vc.Net {
			if err := hp.AddNetDevice(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// CreateTemplate boots a VM of cfg's sandbox configuration to "agent
// ready, no tenant" and saves it as the configuration's template. It
// returns the existing template if there is one, and snapshot.ErrBusy if
// another process is creating it.
func CreateTemplate(ctx context.Context, cfg Config) (snapshot.Template, error) {
	if !cfg.Snapshot.Enabled {
		return snapshot.Template{}, fmt.Errorf("snapshots are disabled in the configuration: %w", errdefs.ErrFailedPrecondition)
	}
	img, err := guestImage(cfg)
	if err != nil {
		return snapshot.Template{}, err
	}
	if !img.snapshottable {
		return snapshot.Template{}, fmt.Errorf("no templates for a kernel or initrd outside the guest image: %w", errdefs.ErrFailedPrecondition)
	}
	// The build VM's state lives next to the templates, not in state_dir:
	// it is no sandbox.
	if err := os.MkdirAll(cfg.Snapshot.Dir, 0o700); err != nil {
		return snapshot.Template{}, err
	}
	dir, err := os.MkdirTemp(cfg.Snapshot.Dir, ".build-")
	if err != nil {
		return snapshot.Template{}, err
	}
	defer os.RemoveAll(dir)
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return snapshot.Template{}, err
	}
	vc := vmConfig(cfg, img, "template", dir, shared)
	k, err := newTemplateKey(cfg, img, vc)
	if err != nil {
		return snapshot.Template{}, err
	}
	key, err := snapshot.Key(k)
	if err != nil {
		return snapshot.Template{}, err
	}
	store := snapshot.Store{Dir: cfg.Snapshot.Dir}
	return store.Create(ctx, key, k, func(ctx context.Context, files snapshot.Files) error {
		return saveBootedVM(ctx, cfg, vc, files)
	})
}

// saveBootedVM boots the VM until its agent opens its port, without ever
// connecting to it: the agent then waits for a host, which is the state
// every restored VM starts from.
//
// A VM with a vTPM boots with one of its own, which is not saved: every VM
// restored from the template gets a new one.
//
// The VM's memory is a file of the template, written through while it
// boots and left out of the saved state: the VMs restored from the
// template map it copy-on-write, so a restore reads no memory, and clones
// share the pages they have not written (vmm.MemoryFile).
func saveBootedVM(ctx context.Context, cfg Config, vc vmm.Config, files snapshot.Files) error {
	vc.Memory = vmm.MemoryFile{File: files.Memory, Shared: true}
	if cfg.VM.TPM {
		tpm, err := startVTPM(ctx, vc.StateDir)
		if err != nil {
			return err
		}
		defer tpm.Stop()
		vc.TPM = tpm.device()
	}
	vm, err := qemu.Driver{Binary: cfg.VM.QEMU}.NewVM(vc)
	if err != nil {
		return fmt.Errorf("configure VM: %w", err)
	}
	defer vm.Stop(context.WithoutCancel(ctx))
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("start VM: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, vc.BootTimeout)
	defer cancel()
	if err := vm.WaitPortOpen(wctx); err != nil {
		return fmt.Errorf("boot template VM (console log %s): %w", vm.ConsoleLog(), err)
	}
	if err := vm.Save(ctx, files.State); err != nil {
		return fmt.Errorf("save template VM: %w", err)
	}
	return nil
}

// spawnTemplateCreation starts `scc snapshot create` in the background.
//
// The template is made for this sandbox's VM, whose size and kernel
// parameters may differ from the configuration file's (pod limits,
// annotations).
func spawnTemplateCreation(ctx context.Context, configPath string, vm VMConfig) {
	spawnScc(ctx, configPath, vm, "snapshot", "create")
}

// spawnPoolFill starts `scc pool fill` in the background for this
// sandbox's VM configuration.
func spawnPoolFill(ctx context.Context, configPath string, vm VMConfig) {
	spawnScc(ctx, configPath, vm, "pool", "fill")
}

// spawnScc runs an scc command about a VM configuration, detached from the
// shim, if the scc binary sits next to the shim.
func spawnScc(ctx context.Context, configPath string, vm VMConfig, verb ...string) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	scc := filepath.Join(filepath.Dir(self), "scc")
	if _, err := os.Stat(scc); err != nil {
		log.G(ctx).Debug("no scc binary next to the shim: not running scc " + strings.Join(verb, " "))
		return
	}
	args := append(verb,
		"--vcpus", strconv.Itoa(vm.VCPUs), "--memory-mib", strconv.Itoa(vm.MemoryMiB),
		"--kernel-params", strings.Join(vm.ExtraArgs, " "))
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	cmd := exec.Command(scc, args...)
	// Its own session: the work outlives this sandbox's shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		log.G(ctx).WithError(err).Warn("start scc " + strings.Join(verb, " "))
		return
	}
	go cmd.Wait()
}

// templateLoadError is a restore that failed while QEMU loaded the
// template's state: the template itself is unusable here. Failures after
// the load (a slow agent on a busy host, say) leave the template alone.
type templateLoadError struct{ err error }

func (e *templateLoadError) Error() string { return "load template: " + e.err.Error() }
func (e *templateLoadError) Unwrap() error { return e.err }
