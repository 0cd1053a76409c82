package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultFirmware    = "/usr/share/qemu/qboot.rom"
	DefaultVCPUs       = 1
	DefaultMemoryMiB   = 512
	DefaultAgentPort   = "io.scc.agent"
	DefaultBootTimeout = 30 * time.Second
)

// SeaBIOSFirmware is Debian's SeaBIOS, which boots a directly loaded
// kernel about as fast as qboot and, unlike it, supports a VM generation
// ID.
const SeaBIOSFirmware = "/usr/share/seabios/bios-256k.bin"

// Names of the files every driver creates in Config.StateDir.
const (
	AgentSocketName   = "agent.sock"
	ForwardSocketName = "forward.sock"
	ConsoleLogName    = "console.log"
)

// MaxStateDirLen bounds len(Config.StateDir). A unix socket path holds at
// most 107 bytes on Linux, and the longest socket name a driver puts in
// StateDir ("/agent.sock", "/qmp.sock") must still fit: deep containerd
// bundle paths do not, so callers pick a short directory such as
// /run/scc/<id>.
const MaxStateDirLen = 107 - len("/agent.sock")

// Share exports a host directory to the guest over virtio-9p. The guest
// mounts it with `mount -t 9p -o trans=virtio <Tag> <dir>`.
type Share struct {
	Tag  string // mount tag the guest names the share by; unique per VM
	Path string // host directory
}

// Config describes one VM.
type Config struct {
	ID       string // short identifier, used in the VMM process name
	StateDir string // per-VM directory for sockets, pid file and logs; unique per VM
	Kernel   string // guest kernel: a PVH vmlinux, or a bzImage (with an EFI stub when UEFIBoot)
	Initrd   string // optional initramfs
	Cmdline  string // kernel command line
	Firmware string // BIOS image; DefaultFirmware when empty

	VCPUs     int
	MemoryMiB int
	Accel     Accel // AccelAuto when empty
	// MaxVCPUs and MaxMemoryMiB, when above VCPUs and MemoryMiB, leave
	// room to add vCPUs and memory while the VM runs (see Resizer). They
	// are part of the machine a saved VM and the VMs restored from it
	// must share. A confidential VM cannot grow.
	MaxVCPUs     int
	MaxMemoryMiB int
	// Memory, when its File is set, backs the guest's boot memory with a
	// file instead of anonymous memory (see MemoryFile).
	Memory MemoryFile

	Shares    []Share
	AgentPort string // virtio-serial port name the guest agent opens
	// ForwardPort, if set, is a second virtio-serial port, the guest's
	// byte channel to services the host forwards (registry, key broker);
	// its host end is the unix socket ForwardAddr.
	ForwardPort string

	// BootTimeout bounds how long the caller waits for the guest agent
	// after Start. Drivers also use it to bound Start itself.
	BootTimeout time.Duration

	// Net are the guest's network interfaces, in order.
	Net []NetDevice
	// HotplugPorts is the number of PCIe ports left empty for devices
	// added while the VM runs. They are part of the device layout a saved
	// VM and the VMs restored from it must share.
	HotplugPorts int
	// TPM, when set, gives the guest a vTPM.
	TPM *TPM
	// VMGenID gives the guest a VM generation ID device whose value is
	// new at every start and every restore: the guest kernel reseeds its
	// random number generator when it changes, so VMs restored from one
	// snapshot stop sharing its state at once. The firmware must support
	// QEMU's WRITE_POINTER linker command (SeaBIOS, OVMF); qboot stops
	// the boot.
	VMGenID bool

	// TEE, when set to a confidential type, launches the VM as an SEV-SNP
	// or TDX guest (see TEEConfig); nil or TEENone is an ordinary VM.
	TEE *TEEConfig
}

// MemoryFile backs a VM's memory with a file, so that VMs restored from
// one snapshot share its pages. A VM whose memory is Shared writes it
// through to the file, and a snapshot of it (Snapshotter.Save) leaves its
// memory out of the saved state: the file is the memory. A VM restored
// from that state maps the same file privately (Shared false): it reads
// the template's pages from the host's page cache, shared with every
// other clone, and copies only those it writes. The file must then never
// change while such VMs run.
type MemoryFile struct {
	File   string
	Shared bool
}

// AgentAddr is the host unix socket of the agent's virtio-serial port.
func (c Config) AgentAddr() string { return filepath.Join(c.StateDir, AgentSocketName) }

// ForwardAddr is the host unix socket of the forwarded channel's port.
func (c Config) ForwardAddr() string { return filepath.Join(c.StateDir, ForwardSocketName) }

// ConsoleLog is the file the guest serial console is written to.
func (c Config) ConsoleLog() string { return filepath.Join(c.StateDir, ConsoleLogName) }

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	// A confidential VM boots its measured firmware, never qboot.
	if c.Firmware == "" && !c.TEE.Confidential() {
		c.Firmware = DefaultFirmware
	}
	c.TEE = c.TEE.withDefaults(c.Firmware)
	if c.VCPUs == 0 {
		c.VCPUs = DefaultVCPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.Accel == "" {
		c.Accel = AccelAuto
	}
	if c.AgentPort == "" {
		c.AgentPort = DefaultAgentPort
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = DefaultBootTimeout
	}
	c.Shares = append([]Share(nil), c.Shares...)
	return c
}

// idPattern matches containerd's identifier rules, which keeps IDs safe
// inside VMM option strings and process names.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// virtio-serial port names and 9p tags end up inside comma-separated VMM
// options and in guest sysfs; keep them to a conservative alphabet.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks c as given (call WithDefaults first to fill zero fields)
// and that the files it names exist. It reports every problem it finds.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.ID == "" {
		bad("id is empty")
	} else if len(c.ID) > 76 || !idPattern.MatchString(c.ID) {
		bad("id %q: want letters, digits and single . _ - separators, at most 76 characters", c.ID)
	}

	switch {
	case c.StateDir == "":
		bad("state dir is empty")
	case !filepath.IsAbs(c.StateDir):
		bad("state dir %q is not absolute", c.StateDir)
	case len(c.StateDir) > MaxStateDirLen:
		bad("state dir %q is %d bytes long, longer than %d: unix socket paths in it would not fit", c.StateDir, len(c.StateDir), MaxStateDirLen)
	}
	checkOptionSafe(&errs, "state dir", c.StateDir)

	checkFile(&errs, "kernel", c.Kernel, true)
	checkFile(&errs, "initrd", c.Initrd, false)
	checkFile(&errs, "firmware", c.Firmware, !c.TEE.Confidential())
	c.checkKernelFormat(&errs)
	if c.VMGenID && IsQboot(c.Firmware) {
		bad("vmgenid: firmware %s is qboot, which cannot place the generation ID and stops the boot: use SeaBIOS (%s) or OVMF", c.Firmware, SeaBIOSFirmware)
	}
	if c.Memory.File != "" {
		switch {
		case !filepath.IsAbs(c.Memory.File):
			bad("memory file %q is not absolute", c.Memory.File)
		case c.TEE.Confidential():
			bad("memory file: a confidential VM's memory is private to it and cannot be backed by a host file")
		case !c.Memory.Shared:
			// A private mapping of a missing file cannot be made.
			checkFile(&errs, "memory file", c.Memory.File, true)
		default:
			checkOptionSafe(&errs, "memory file", c.Memory.File)
		}
	}
	if c.TPM != nil {
		if err := c.TPM.validate(); err != nil {
			errs = append(errs, err)
		}
	}

	if c.VCPUs < 1 || c.VCPUs > 255 {
		bad("vcpus %d: want 1 to 255", c.VCPUs)
	}
	if c.MemoryMiB < 64 {
		bad("memory %d MiB: want at least 64", c.MemoryMiB)
	}
	if c.MaxVCPUs != 0 && (c.MaxVCPUs < c.VCPUs || c.MaxVCPUs > 255) {
		bad("max vcpus %d: want %d to 255, or 0", c.MaxVCPUs, c.VCPUs)
	}
	if c.MaxMemoryMiB != 0 && c.MaxMemoryMiB < c.MemoryMiB {
		bad("max memory %d MiB: want at least %d, or 0", c.MaxMemoryMiB, c.MemoryMiB)
	}
	if c.TEE.Confidential() && (c.MaxVCPUs > c.VCPUs || c.MaxMemoryMiB > c.MemoryMiB) {
		bad("a confidential VM cannot add vCPUs or memory: max vcpus and max memory must not exceed its size")
	}
	if !c.Accel.valid() {
		bad("accel %q: want %q, %q or %q", c.Accel, AccelAuto, AccelKVM, AccelTCG)
	}
	if c.AgentPort == "" {
		bad("agent port is empty")
	} else if !namePattern.MatchString(c.AgentPort) {
		bad("agent port %q: want letters, digits, '.', '_' and '-'", c.AgentPort)
	}
	if c.ForwardPort != "" && (!namePattern.MatchString(c.ForwardPort) || c.ForwardPort == c.AgentPort) {
		bad("forward port %q: want letters, digits, '.', '_' and '-', and a name other than the agent port's", c.ForwardPort)
	}
	if c.BootTimeout <= 0 {
		bad("boot timeout %v: want a positive duration", c.BootTimeout)
	}

	tags := make(map[string]bool, len(c.Shares))
	for i, s := range c.Shares {
		switch {
		case s.Tag == "":
			bad("share %d: tag is empty", i)
		case !namePattern.MatchString(s.Tag):
			bad("share %d: tag %q: want letters, digits, '.', '_' and '-'", i, s.Tag)
		case tags[s.Tag]:
			bad("share %d: tag %q used twice", i, s.Tag)
		}
		tags[s.Tag] = true
		if s.Path == "" {
			bad("share %q: path is empty", s.Tag)
			continue
		}
		checkOptionSafe(&errs, "share "+s.Tag+" path", s.Path)
		fi, err := os.Stat(s.Path)
		switch {
		case err != nil:
			bad("share %q: %w", s.Tag, err)
		case !fi.IsDir():
			bad("share %q: %s is not a directory", s.Tag, s.Path)
		}
	}

	for _, n := range c.Net {
		if err := n.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	c.TEE.validate(&errs, c)

	if len(errs) > 0 {
		return fmt.Errorf("invalid vm config: %w", errors.Join(errs...))
	}
	return nil
}

// IsQboot reports whether firmware names qboot (QEMU's minimal BIOS, also
// installed as bios-microvm.bin).
func IsQboot(firmware string) bool {
	switch filepath.Base(firmware) {
	case "qboot.rom", "bios-microvm.bin":
		return true
	}
	return false
}

// checkFile requires path to name a regular file when required is set or
// the path is not empty.
func checkFile(errs *[]error, what, path string, required bool) {
	if path == "" {
		if required {
			*errs = append(*errs, fmt.Errorf("%s path is empty", what))
		}
		return
	}
	checkOptionSafe(errs, what, path)
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		*errs = append(*errs, fmt.Errorf("%s: %w", what, err))
	case !fi.Mode().IsRegular():
		*errs = append(*errs, fmt.Errorf("%s: %s is not a regular file", what, path))
	}
}

// checkOptionSafe rejects paths a VMM command line cannot carry verbatim:
// commas separate options in QEMU's option syntax, and some of its parsers
// (-serial file:) have no way to escape them.
func checkOptionSafe(errs *[]error, what, path string) {
	if strings.ContainsAny(path, ",\n\x00") {
		*errs = append(*errs, fmt.Errorf("%s %q: commas, newlines and NUL are not supported in paths", what, path))
	}
}
