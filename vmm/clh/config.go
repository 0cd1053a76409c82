package clh

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/sccontainers/scc/vmm"
)

// Names of the cloud-hypervisor files in vmm.Config.StateDir.
const (
	APISocketName = "clh.sock"
	LogName       = "clh.log" // cloud-hypervisor's and virtiofsd's stdout and stderr
)

// fsSocketName is the vhost-user socket of share i's virtiofsd.
func fsSocketName(i int) string { return "fs" + strconv.Itoa(i) + ".sock" }

// virtio-fs queue geometry: one request queue is enough for a container's
// root and volumes; 1024 is cloud-hypervisor's default depth.
const (
	fsQueues    = 1
	fsQueueSize = 1024
)

// VMConfigFor returns the body of PUT /vm.create for cfg. It is a pure
// function of cfg, which must have passed Validate with its accelerator
// resolved to KVM.
//
// The guest's serial port (ttyS0) goes to ConsoleLog. The agent's channel
// is the virtio-console (hvc0 in the guest), whose host end
// cloud-hypervisor serves on AgentAddr: cloud-hypervisor has no named
// virtio-serial ports. Shares become virtio-fs devices served by one
// virtiofsd each (cloud-hypervisor has no 9p); the guest mounts them with
// `mount -t virtiofs <tag> <dir>`, and guest memory is then shared with
// those daemons.
func VMConfigFor(cfg vmm.Config) (VMConfig, error) {
	if cfg.Accel != vmm.AccelKVM {
		return VMConfig{}, fmt.Errorf("cloud-hypervisor config: accel %q: cloud-hypervisor runs guests under KVM only", cfg.Accel)
	}
	if cfg.ForwardPort != "" {
		return VMConfig{}, fmt.Errorf("cloud-hypervisor config: forward port %q: cloud-hypervisor has no second virtio-serial port", cfg.ForwardPort)
	}
	vc := VMConfig{
		CPUs:    CPUsConfig{BootVCPUs: cfg.VCPUs, MaxVCPUs: cfg.VCPUs},
		Memory:  MemoryConfig{Size: int64(cfg.MemoryMiB) << 20},
		Payload: PayloadConfig{Kernel: cfg.Kernel, Initramfs: cfg.Initrd, Cmdline: cfg.Cmdline},
		RNG:     &RNGConfig{Src: "/dev/urandom"},
		Serial:  ConsoleConfig{Mode: ModeFile, File: cfg.ConsoleLog()},
		Console: ConsoleConfig{Mode: ModeSocket, Socket: cfg.AgentAddr()},
	}
	if cfg.Firmware != "" && cfg.Firmware != vmm.DefaultFirmware {
		// qboot is QEMU's; cloud-hypervisor boots a kernel directly
		// without firmware. Any other image (rust-hypervisor-firmware,
		// OVMF built for cloud-hypervisor) is the caller's choice.
		vc.Payload.Firmware = cfg.Firmware
	}
	for i, s := range cfg.Shares {
		vc.FS = append(vc.FS, FSConfig{
			Tag:       s.Tag,
			Socket:    filepath.Join(cfg.StateDir, fsSocketName(i)),
			NumQueues: fsQueues,
			QueueSize: fsQueueSize,
		})
	}
	if len(cfg.Shares) > 0 {
		// vhost-user daemons map guest memory.
		vc.Memory.Shared = true
	}

	if !cfg.TEE.Confidential() {
		return vc, nil
	}
	tee := cfg.TEE
	switch tee.Type {
	case vmm.TEETDX:
		if tee.TDX.MRConfigID != ([48]byte{}) || tee.TDX.QuoteGenerationSocket != "" {
			// The API has no field for either.
			return VMConfig{}, fmt.Errorf("cloud-hypervisor config: tdx: MRCONFIGID and a quote generation socket cannot be set through cloud-hypervisor's API")
		}
		vc.Payload.Firmware = tee.Firmware // TDVF
		vc.Platform = &PlatformConfig{TDX: true}
	case vmm.TEESNP:
		s := tee.SNP
		if s.IGVM == "" {
			return VMConfig{}, fmt.Errorf("cloud-hypervisor config: snp: cloud-hypervisor launches SEV-SNP guests from an IGVM file only (TEE.SNP.IGVM)")
		}
		if s.IDBlock != "" || s.Policy != vmm.DefaultSNPPolicy {
			return VMConfig{}, fmt.Errorf("cloud-hypervisor config: snp: the guest policy and ID block come from the IGVM file, not from the API")
		}
		vc.Payload.Firmware = ""
		vc.Payload.IGVM = s.IGVM
		vc.Payload.HostData = hex.EncodeToString(s.HostData[:])
		vc.Platform = &PlatformConfig{SEVSNP: true}
	default:
		return VMConfig{}, fmt.Errorf("cloud-hypervisor config: tee type %q", tee.Type)
	}
	return vc, nil
}
