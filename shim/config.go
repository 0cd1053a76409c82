package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sccontainers/scc/vmm"
)

// ConfigEnv names the environment variable that points the shim at its
// configuration file. containerd passes its own environment to the shims it
// starts, so a private containerd can select a private configuration.
const ConfigEnv = "SCC_CONFIG"

// DefaultConfigPath is read when neither the runtime options nor ConfigEnv
// name a configuration file.
const DefaultConfigPath = "/etc/scc/config.toml"

// Config is the runtime configuration of the shim (config.toml).
type Config struct {
	// StateDir holds one directory per VM: its sockets, console log and
	// shared rootfs mounts. It should be on a tmpfs such as /run.
	StateDir string `toml:"state_dir"`
	// GuestDir holds the guest image built by `scc guest build`.
	GuestDir string         `toml:"guest_dir"`
	VM       VMConfig       `toml:"vm"`
	Snapshot SnapshotConfig `toml:"snapshot"`
	Pool     PoolConfig     `toml:"pool"`
	// Confidential makes containers pull their images in the guest.
	Confidential ConfidentialConfig `toml:"confidential"`
	// EnableAnnotations lists the io.scc.* pod annotations a pod may use to
	// change its VM: RE2 expressions matched against the whole annotation
	// name (see AnnotationPolicy and docs/kubernetes.md). Empty: none.
	EnableAnnotations []string `toml:"enable_annotations"`
}

// SnapshotConfig controls starting sandboxes from VM templates.
type SnapshotConfig struct {
	// Enabled restores a sandbox's VM from the template of its
	// configuration when there is one, instead of booting it.
	Enabled bool `toml:"enabled"`
	// Dir holds the templates (one directory per configuration).
	Dir string `toml:"dir"`
	// AutoCreate starts building the missing template of a configuration
	// in the background (with `scc snapshot create`, next to the shim)
	// when a sandbox had to boot.
	AutoCreate bool `toml:"auto_create"`
}

// PoolConfig keeps VMs restored from a configuration's template ready
// and paused, so that a sandbox only connects to one and resumes it.
// Pooled VMs are independent of any shim: they survive shim restarts and
// are stopped by `scc pool drain`.
type PoolConfig struct {
	// Size is the number of ready VMs kept per VM configuration (a pod
	// whose limits change the VM's size has a configuration of its own).
	// 0 disables the pool. It needs snapshot.enabled, but with vm.start =
	// "reuse", where it bounds the cleaned VMs kept for reuse.
	Size int `toml:"size"`
	// MaxVMs bounds the VMs of this state_dir, sandboxes and pooled ones
	// together, that a refill may reach (confidential hardware bounds
	// them, e.g. SEV-SNP ASIDs). 0: no bound.
	MaxVMs int `toml:"max_vms"`
	// MemoryBudgetMiB bounds the guest memory of all pooled VMs. 0: no
	// bound.
	MemoryBudgetMiB int `toml:"memory_budget_mib"`
}

// Start modes, VMConfig.Start.
const (
	// StartAuto takes a pooled VM, else restores the template, else boots.
	StartAuto = "auto"
	// StartBoot always boots the kernel.
	StartBoot = "boot"
	// StartRestore restores the template (booting while there is none),
	// never taking pooled VMs.
	StartRestore = "restore"
	// StartPool is StartAuto that requires a pool (pool.size > 0).
	StartPool = "pool"
	// StartReuse is confidential-restore reuse, for VMs whose memory the
	// host cannot save (confidential VMs): a sandbox takes a VM that
	// served an earlier sandbox of its configuration and was cleaned by
	// the guest's trusted monitor, else boots one; when the sandbox ends,
	// its VM is cleaned in place and kept in the pool (up to pool.size per
	// configuration) instead of stopped. Templates are not used.
	// docs/monitor.md describes the clean and what it guarantees.
	StartReuse = "reuse"
)

// VMConfig sizes and launches the VM of a sandbox.
type VMConfig struct {
	// Start says how a sandbox's VM starts: StartAuto (the default),
	// StartBoot, StartRestore, StartPool or StartReuse.
	Start     string `toml:"start"`
	QEMU      string `toml:"qemu"`
	Firmware  string `toml:"firmware"`
	Accel     string `toml:"accel"`
	VCPUs     int    `toml:"vcpus"`
	MemoryMiB int    `toml:"memory_mib"`
	// MaxVCPUs and MaxMemoryMiB are what a VM can grow to while it runs,
	// when its containers' limits are raised (Update); 0 takes the host's
	// CPU count and memory, and a value at or below vcpus (memory_mib)
	// keeps the VM at its size.
	MaxVCPUs     int      `toml:"max_vcpus"`
	MaxMemoryMiB int      `toml:"max_memory_mib"`
	Kernel       string   `toml:"kernel"` // overrides the guest image's kernel
	Initrd       string   `toml:"initrd"` // overrides the guest image's initrd
	ExtraArgs    []string `toml:"kernel_params"`
	// TPM gives each VM a vTPM of its own (an swtpm process, stopped and
	// removed with the VM) that only the guest's trusted monitor reaches.
	// A VM restored from a template gets a new one too: no two VMs share
	// a TPM identity.
	TPM bool `toml:"tpm"`
	// VMGenID gives each VM a VM generation ID that is new at every start
	// and restore; the guest kernel reseeds its random number generator
	// when it changes. It needs firmware that supports it: SeaBIOS (the
	// default) or OVMF, not qboot.
	VMGenID bool `toml:"vmgenid"`
	// BootTimeout bounds the time from QEMU's start to the agent's answer.
	BootTimeout duration `toml:"boot_timeout"`
	// LogDir receives the guest console log of a VM that failed (did not
	// boot, or died under its containers), so it outlives the VM's state.
	LogDir string `toml:"log_dir"`
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DefaultConfig returns the configuration used when no file sets a value.
func DefaultConfig() Config {
	return Config{
		StateDir: "/run/scc",
		GuestDir: "/var/lib/scc/guest",
		Snapshot: SnapshotConfig{
			Enabled:    true,
			Dir:        "/var/lib/scc/snapshots",
			AutoCreate: true,
		},
		VM: VMConfig{
			Start: StartAuto,
			QEMU:  "qemu-system-x86_64",
			// qboot: SeaBIOS (which vmgenid needs) lost some boots under
			// TCG on a loaded host, the guest resetting before its kernel
			// printed anything; vmgenid stays opt-in until that is
			// understood.
			Firmware:    "/usr/share/qemu/qboot.rom",
			Accel:       "auto",
			VCPUs:       1,
			MemoryMiB:   512,
			BootTimeout: duration{60 * time.Second},
			LogDir:      "/var/log/scc",
		},
	}
}

// LoadConfig reads path (or, when path is empty, $SCC_CONFIG or
// DefaultConfigPath if it exists) over the defaults.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	explicit := path != ""
	if path == "" {
		path = os.Getenv(ConfigEnv)
		explicit = path != ""
	}
	if path == "" {
		path = DefaultConfigPath
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := toml.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	if err := cfg.validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func (c Config) validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("state_dir must be set")
	case c.VM.VCPUs < 1:
		return fmt.Errorf("vm.vcpus must be at least 1, not %d", c.VM.VCPUs)
	case c.VM.MemoryMiB < 64:
		return fmt.Errorf("vm.memory_mib must be at least 64, not %d", c.VM.MemoryMiB)
	case c.VM.MaxVCPUs < 0 || c.VM.MaxMemoryMiB < 0:
		return errors.New("vm.max_vcpus and vm.max_memory_mib must not be negative")
	case c.VM.BootTimeout.Duration <= 0:
		return errors.New("vm.boot_timeout must be positive")
	case c.Snapshot.Enabled && c.Snapshot.Dir == "":
		return errors.New("snapshot.dir must be set when snapshot.enabled")
	case c.Pool.Size < 0 || c.Pool.MaxVMs < 0 || c.Pool.MemoryBudgetMiB < 0:
		return errors.New("pool.size, pool.max_vms and pool.memory_budget_mib must not be negative")
	case c.Pool.Size > 0 && !c.Snapshot.Enabled && c.VM.Start != StartReuse:
		return errors.New("pool.size needs snapshot.enabled: pooled VMs are restored from templates")
	case c.VM.VMGenID && vmm.IsQboot(c.VM.Firmware):
		return fmt.Errorf("vm.vmgenid needs firmware that supports a VM generation ID, and %s is qboot: set vm.firmware = %q or vm.vmgenid = false", c.VM.Firmware, vmm.SeaBIOSFirmware)
	}
	switch c.VM.Start {
	case StartAuto, StartBoot, StartRestore:
	case StartPool:
		if c.Pool.Size == 0 {
			return errors.New("vm.start = \"pool\" needs pool.size > 0")
		}
	case StartReuse:
		if c.Pool.Size == 0 {
			return errors.New("vm.start = \"reuse\" needs pool.size > 0: the number of cleaned VMs kept per configuration")
		}
		if c.VM.Kernel != "" || c.VM.Initrd != "" {
			return errors.New("vm.start = \"reuse\" needs the guest image's kernel and initrd (no vm.kernel or vm.initrd): reused VMs are told apart by their digests")
		}
	default:
		return fmt.Errorf("vm.start must be auto, boot, restore, pool or reuse, not %q", c.VM.Start)
	}
	if c.VM.Start == StartRestore && !c.Snapshot.Enabled {
		return errors.New("vm.start = \"restore\" needs snapshot.enabled")
	}
	switch c.VM.Accel {
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("vm.accel must be auto, kvm or tcg, not %q", c.VM.Accel)
	}
	if err := (AnnotationPolicy{Enable: c.EnableAnnotations}).validate(); err != nil {
		return err
	}
	return c.Confidential.validate()
}
