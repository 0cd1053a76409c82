package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/image"
)

// sandbox is the VM of a pod (or of a lone container) and the connection
// to its agent.
type sandbox struct {
	id        string
	dir       string // state directory, removed by stop
	sharedDir string // exported to the guest as agent.SharedTag
	logDir    string // where the console log of a failed VM is kept

	vm     vmm.VM
	tpm    *vTPM // the VM's vTPM, if any
	client *ttrpc.Client
	agent  agent.AgentService

	// confidential is the configuration of the sandbox's confidential
	// containers (after the pod's annotations); stopForward ends its
	// forwarded channel.
	confidential ConfidentialConfig
	stopForward  func()
	diskMu       sync.Mutex
	disks        map[string]bool // erofs digests of the layer disks attached, guarded by diskMu
	ports        *portForwarder  // a pod's port forwarding, if any
	// reuse is set when the VM is cleaned and kept for the next sandbox
	// when this one ends (vm.start = "reuse", reuse.go).
	reuse *reuseState

	// base is the VM's size without its containers' limits, max what
	// it can grow to; resizeMu serialises growing it.
	base, max limits
	resizeMu  sync.Mutex
}

// vmRequest is what a sandbox's VM is made of besides the shim's
// configuration: the pod's annotations (its io.scc.* settings and init
// data), the vCPUs and memory its limits add to the base size, and the
// network namespace CNI prepared for it ("" for none).
type vmRequest struct {
	annotations      map[string]string
	vcpus, memoryMiB int
	netns            string
}

// ensureSandbox returns the shim's sandbox, booting its VM on first use.
// Later containers of the pod run in the same VM.
//
// A pod's sandbox container sizes the VM: its CPU and memory limits are
// added to the configured base size. A shim whose pod came through the
// sandbox API boots no VM for a container: the pod's VM must run.
func (s *service) ensureSandbox(ctx context.Context, id, configPath string, spec *specs.Spec) (*sandbox, error) {
	if p := s.apiPod(); p != nil {
		return s.podVM(p)
	}
	req := vmRequest{annotations: spec.Annotations}
	if isPodSandbox(spec) {
		req.vcpus, req.memoryMiB = podResources(spec)
		req.netns = netnsPath(spec)
	}
	return s.ensureVM(ctx, id, configPath, req)
}

// ensureVM returns the shim's sandbox, starting its VM for req if it has
// none yet.
func (s *service) ensureVM(ctx context.Context, id, configPath string, req vmRequest) (*sandbox, error) {
	s.bootMu.Lock()
	defer s.bootMu.Unlock()
	s.mu.Lock()
	sb := s.sandbox
	s.mu.Unlock()
	if sb != nil {
		return sb, nil
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	// A pod's own settings, where the administrator allows them; its
	// limits are added to the size they give.
	if err := applyAnnotations(&cfg, AnnotationPolicy{Enable: cfg.EnableAnnotations}, req.annotations); err != nil {
		return nil, err
	}
	pod, err := initData(req.annotations)
	if err != nil {
		return nil, err
	}
	var pn *podNetwork
	base := limits{vcpus: cfg.VM.VCPUs, memoryMiB: cfg.VM.MemoryMiB}
	cfg.VM.VCPUs += req.vcpus
	cfg.VM.MemoryMiB += req.memoryMiB
	nsPath := req.netns
	if nsPath != "" {
		if pn, err = setupPodNetwork(nsPath); err != nil {
			return nil, fmt.Errorf("pod network: %w", err)
		}
		// QEMU holds the taps once started; the shim's copies go.
		defer pn.close()
	}
	sb, err = startSandbox(ctx, cfg, configPath, id, pn)
	if err != nil {
		return nil, err
	}
	sb.base = base
	if pod != nil {
		if err := sb.bindInitData(ctx, pod); err != nil {
			sb.stop(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if pn != nil {
		if sb.ports, err = startPortForward(s.ctx, nsPath, sb.agent); err != nil {
			log.G(ctx).WithError(err).Warn("no port forwarding for the pod")
		}
	}
	s.mu.Lock()
	s.sandbox = sb
	s.mu.Unlock()
	go s.watchVM(sb)
	go s.forwardOOM(sb.id, sb.agent, sb.vm.Done())
	return sb, nil
}

// startSandbox starts a VM, from its configuration's template when there
// is one, else by booting it, and waits for its agent. On failure it leaves
// nothing behind but, in the log directory, the console log of the VM.
func startSandbox(ctx context.Context, cfg Config, configPath, id string, pn *podNetwork) (_ *sandbox, retErr error) {
	img, err := guestImage(cfg)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.StateDir, shortID(id))
	if len(dir) > vmm.MaxStateDirLen {
		return nil, fmt.Errorf("state directory %s is longer than %d bytes: choose a shorter state_dir", dir, vmm.MaxStateDirLen)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	sb := &sandbox{id: id, dir: dir, sharedDir: filepath.Join(dir, "shared"), logDir: cfg.VM.LogDir, confidential: cfg.Confidential}
	defer func() {
		if retErr != nil {
			sb.keepConsoleLog(ctx)
			if err := sb.stop(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Warn("clean up failed sandbox")
			}
		}
	}()
	vc := vmConfig(cfg, img, shortID(id), dir, sb.sharedDir)
	sb.max = limits{vcpus: vc.MaxVCPUs, memoryMiB: vc.MaxMemoryMiB}
	if pn != nil {
		vc.Net = pn.devices
		// A restored VM gets its interfaces through hotplug ports, of
		// which templates have one.
		if len(vc.Net) > vc.HotplugPorts {
			img.snapshottable = false
		}
	}
	start := time.Now()
	source := "boot"
	if key, ok := reuseKey(cfg, img, vc); ok {
		sb.reuse = &reuseState{cfg: cfg, key: key, vcpus: vc.VCPUs, memoryMiB: vc.MemoryMiB}
	}
	// Pooled VMs have no vTPM: theirs would have to move to the sandbox
	// with them.
	pooled := usesPool(cfg) && img.snapshottable && !cfg.VM.TPM
	switch {
	case sb.reuse != nil && sb.claimReused(ctx, cfg, vc):
		source = "reused"
	case pooled && sb.claimPooled(ctx, cfg, img, vc):
		source = "pool"
	default:
		if source, err = sb.startOwnVM(ctx, cfg, configPath, img, vc); err != nil {
			return nil, err
		}
	}
	if pooled {
		// Refill what this sandbox took, or make the first pooled VMs.
		spawnPoolFill(ctx, configPath, cfg.VM)
	}
	if err := writeShimPid(dir); err != nil {
		return nil, fmt.Errorf("record shim pid: %w", err)
	}
	if err := sb.serveForward(ctx, cfg.Confidential, vc); err != nil {
		return nil, err
	}
	if pn != nil {
		if _, err := sb.agent.ConfigureNetwork(ctx, pn.config); err != nil {
			return nil, fmt.Errorf("configure guest network: %w", fromAgent(err))
		}
	}
	log.G(ctx).WithField(logVM, vc.ID).WithField("source", source).WithField("start", time.Since(start)).Debug("VM ready")
	return sb, nil
}

// startOwnVM starts a VM of the sandbox's own, in its directory: restored
// from its configuration's template when there is one and the start mode
// allows it, else booted. It returns how: "template" or "boot".
func (sb *sandbox) startOwnVM(ctx context.Context, cfg Config, configPath string, img guestFiles, vc vmm.Config) (string, error) {
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		return "", fmt.Errorf("create VM state dir: %w", err)
	}
	if err := os.Mkdir(sb.sharedDir, 0o700); err != nil {
		return "", fmt.Errorf("create shared dir: %w", err)
	}
	if err := sb.startVTPM(ctx, cfg, &vc); err != nil {
		return "", err
	}
	if sb.reuse != nil {
		// A VM to be reused has no template: its memory is the
		// tenant's (a confidential VM's cannot be saved at all).
		return "boot", sb.bootReusable(ctx, cfg, vc)
	}
	if cfg.VM.Start != StartBoot && cfg.VM.Start != StartReuse {
		if tmpl, ok := lookupTemplate(ctx, cfg, img, vc); ok {
			err := sb.restore(ctx, cfg, vc, tmpl)
			if err == nil {
				return "template", nil
			}
			// A template that no longer restores (a changed host) must
			// not keep sandboxes from starting: boot, and drop it if QEMU
			// could not load it (not merely in time, on a busy host).
			log.G(ctx).WithError(err).Warn("restore from template failed; booting instead")
			var lerr *templateLoadError
			if errors.As(err, &lerr) && !errors.Is(err, context.DeadlineExceeded) {
				removeTemplate(cfg, tmpl.Key)
			}
			sb.stopVM(ctx)
			// The failed restore may have used the vTPM: the VM that
			// boots gets a new one.
			if err := sb.startVTPM(ctx, cfg, &vc); err != nil {
				return "", err
			}
		}
	}
	if err := sb.boot(ctx, cfg, vc); err != nil {
		return "", err
	}
	if cfg.VM.Start != StartBoot && cfg.VM.Start != StartReuse && cfg.Snapshot.Enabled && cfg.Snapshot.AutoCreate && img.snapshottable && !usesPool(cfg) {
		// With a pool, the pool's fill makes the template.
		spawnTemplateCreation(ctx, configPath, cfg.VM)
	}
	return "boot", nil
}

// startVTPM gives the VM a new vTPM, if the configuration asks for one.
func (sb *sandbox) startVTPM(ctx context.Context, cfg Config, vc *vmm.Config) error {
	if !cfg.VM.TPM {
		return nil
	}
	// A reused VM's vTPM outlives this shim with the VM.
	tpm, err := startVTPMIn(ctx, filepath.Join(sb.dir, tpmDirName), sb.reuse != nil)
	if err != nil {
		return err
	}
	sb.tpm, vc.TPM = tpm, tpm.device()
	return nil
}

// vmConfig is the VM of a sandbox. Templates are made from the same
// function, so that a template's devices match the sandboxes restored
// from it.
func vmConfig(cfg Config, img guestFiles, id, dir, sharedDir string) vmm.Config {
	maxVCPUs, maxMiB := vmMaxima(cfg)
	params := append([]string{img.cmdline}, cfg.VM.ExtraArgs...)
	if cfg.VM.TPM {
		params = append(params, tpmParam)
	}
	if cfg.VM.Start == StartReuse {
		params = append(params, initOnFreeParam)
	}
	return vmm.Config{
		ID:          id,
		StateDir:    dir,
		Kernel:      img.kernel,
		Initrd:      img.initrd,
		Cmdline:     strings.TrimSpace(strings.Join(params, " ")),
		Firmware:    cfg.VM.Firmware,
		VCPUs:       cfg.VM.VCPUs,
		MemoryMiB:   cfg.VM.MemoryMiB,
		Accel:       vmm.Accel(cfg.VM.Accel),
		Shares:      []vmm.Share{{Tag: agent.SharedTag, Path: sharedDir}},
		AgentPort:   agent.PortName,
		BootTimeout: cfg.VM.BootTimeout.Duration,
		// Ports for the pod network's interfaces of a VM restored from
		// a template and for the layer disks of confidential containers;
		// every VM has them so that all share one layout.
		HotplugPorts: hotplugPorts,
		// Every VM has the forwarded channel, so that all share one
		// layout (templates); only confidential containers use it.
		ForwardPort:  forward.PortName,
		VMGenID:      cfg.VM.VMGenID,
		MaxVCPUs:     maxVCPUs,
		MaxMemoryMiB: maxMiB,
	}
}

// hotplugPorts is the number of PCIe hotplug ports of every VM.
const hotplugPorts = 8

// boot starts the VM from its kernel and waits for the agent.
func (sb *sandbox) boot(ctx context.Context, cfg Config, vc vmm.Config) error {
	vm, err := newVM(cfg, vc, sb.reuse != nil)
	if err != nil {
		return fmt.Errorf("configure VM: %w", err)
	}
	sb.vm = vm
	if err := sb.vm.Start(ctx); err != nil {
		return fmt.Errorf("start VM: %w", err)
	}
	if err := sb.dial(); err != nil {
		return err
	}
	return sb.waitAgent(ctx, cfg.VM.BootTimeout.Duration)
}

// vmExitGrace is how long a failed first Ping waits to learn whether the VM
// exited.
const vmExitGrace = 2 * time.Second

// dial connects to the agent's channel. Bytes sent before the guest opens
// its port wait in the host socket, so the agent may still be booting.
func (sb *sandbox) dial() error {
	conn, err := net.Dial("unix", sb.vm.AgentAddr())
	if err != nil {
		return fmt.Errorf("dial agent: %w", err)
	}
	sb.client = ttrpc.NewClient(conn)
	sb.agent = agent.NewAgentClient(sb.client)
	return nil
}

// waitAgent waits until the agent answers: one Ping bounded by timeout;
// the VM dying ends the wait.
func (sb *sandbox) waitAgent(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-sb.vm.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := sb.agent.Ping(ctx, &agent.PingRequest{})
	if err == nil {
		log.G(ctx).WithField("kernel", resp.KernelRelease).WithField("agent", resp.AgentVersion).WithField("evidence", resp.EvidenceSource).Debug("agent answered")
		return nil
	}
	// A VM that dies closes the agent socket, which can fail the Ping
	// before the VMM's exit is seen: give the exit a moment to arrive, it
	// says far more (the console tail) than a closed connection does.
	select {
	case <-sb.vm.Done():
		return fmt.Errorf("VM exited before its agent answered: %w", sb.vm.Err())
	case <-time.After(vmExitGrace):
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("guest agent did not answer within %s (console log: %s): %s: %w", timeout, sb.consoleLogPath(), vmm.Tail(sb.vm.ConsoleLog(), 2048), err)
	}
	return fmt.Errorf("ping agent: %w", err)
}

// stop shuts the VM down and removes the state directory. Mounts below the
// shared directory must be gone already.
func (sb *sandbox) stop(ctx context.Context) error {
	var errs []error
	if err := sb.stopVM(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := removeStateDir(sb.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopVM closes the agent connection and stops the VM, if any.
func (sb *sandbox) stopVM(ctx context.Context) error {
	if sb.stopForward != nil {
		sb.stopForward()
		sb.stopForward = nil
	}
	sb.ports.close()
	sb.ports = nil
	if sb.client != nil {
		sb.client.Close()
		sb.client, sb.agent = nil, nil
	}
	var errs []error
	if sb.vm != nil {
		vm := sb.vm
		sb.vm = nil
		if err := vm.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop VM: %w", err))
		}
	}
	// After QEMU: it talks to the vTPM until it exits.
	if sb.tpm != nil {
		if err := sb.tpm.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop vTPM: %w", err))
		}
		sb.tpm = nil
	}
	return errors.Join(errs...)
}

func (sb *sandbox) consoleLogPath() string {
	if sb.logDir != "" {
		return filepath.Join(sb.logDir, sb.id+".console.log")
	}
	return filepath.Join(sb.dir, vmm.ConsoleLogName)
}

// keepConsoleLog copies the console log of a failed VM to the log
// directory, where it outlives the state directory.
func (sb *sandbox) keepConsoleLog(ctx context.Context) {
	if sb.logDir == "" {
		return
	}
	src, err := os.Open(filepath.Join(sb.dir, vmm.ConsoleLogName))
	if err != nil {
		return
	}
	defer src.Close()
	if err := os.MkdirAll(sb.logDir, 0o755); err != nil {
		log.G(ctx).WithError(err).Warn("keep console log")
		return
	}
	dst, err := os.Create(sb.consoleLogPath())
	if err != nil {
		log.G(ctx).WithError(err).Warn("keep console log")
		return
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		log.G(ctx).WithError(err).Warn("keep console log")
	}
}

// removeStateDir removes a VM state directory, refusing to cross into
// mounts that are still there (they would be the container's data).
func removeStateDir(dir string) error {
	shared := filepath.Join(dir, "shared")
	entries, _ := os.ReadDir(shared)
	for _, e := range entries {
		// Gone meanwhile: a `delete` for another container of the pod
		// cleans up after the same dead shim.
		if err := unshareLeftover(filepath.Join(shared, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove VM state dir: %w", err)
	}
	return nil
}

// shortID keeps state paths within the unix socket path limit.
func shortID(id string) string {
	if len(id) > 32 {
		return id[:32]
	}
	return id
}

type guestFiles struct {
	kernel, initrd, cmdline string
	// digests of kernel and initrd, from the image manifest
	kernelSHA256, initrdSHA256 string
	// snapshottable is false when the config overrides the image's
	// files, whose digests are then unknown.
	snapshottable bool
}

// guestImage finds the kernel, initrd and command line to boot. The kernel
// is the one the VM's firmware starts: the image's EFI kernel (vmlinuz)
// with UEFI firmware, else its PVH vmlinux, which qboot boots faster.
func guestImage(cfg Config) (guestFiles, error) {
	m, err := image.Load(cfg.GuestDir)
	if err != nil {
		return guestFiles{}, fmt.Errorf("guest image: %w", err)
	}
	uefi, err := vmm.IsUEFIFirmware(cfg.VM.Firmware)
	if err != nil {
		return guestFiles{}, fmt.Errorf("guest image: %w", err)
	}
	kernel, err := m.KernelFor(uefi)
	if err != nil {
		return guestFiles{}, fmt.Errorf("guest image: %w", err)
	}
	g := guestFiles{
		kernel: kernel.Path, initrd: m.Initrd.Path, cmdline: m.Cmdline,
		kernelSHA256: kernel.SHA256, initrdSHA256: m.Initrd.SHA256,
		snapshottable: true,
	}
	if cfg.VM.Kernel != "" {
		g.kernel, g.snapshottable = cfg.VM.Kernel, false
	}
	if cfg.VM.Initrd != "" {
		g.initrd, g.snapshottable = cfg.VM.Initrd, false
	}
	return g, nil
}
