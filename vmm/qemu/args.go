package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/sccontainers/scc/vmm"
)

// agentPortID is the QEMU device id of the agent's virtio-serial port.
const agentPortID = "agentport"

// Names of the QEMU-specific files in vmm.Config.StateDir.
const (
	QMPSocketName = "qmp.sock"
	PidFileName   = "qemu.pid"
	LogName       = "qemu.log" // QEMU's own stdout and stderr
)

// Args returns QEMU's arguments (without the program name) for cfg. It is a
// pure function of cfg: cfg must have passed Validate, and cfg.Accel must
// already be resolved to KVM or TCG (see vmm.ResolveAccel).
//
// The machine has no network, no display, no default devices and never
// reboots: a guest reboot, poweroff or panic (with panic=-1 on the kernel
// command line) ends the QEMU process.
func Args(cfg vmm.Config) ([]string, error) {
	return args(cfg, "")
}

// restoreArgs is Args for a VM whose state will be loaded over QMP: QEMU
// waits for migrate-incoming and stays paused (-S) once it is loaded.
func restoreArgs(cfg vmm.Config) ([]string, error) {
	return args(cfg, "defer")
}

func args(cfg vmm.Config, incoming string) ([]string, error) {
	var cpu string
	switch cfg.Accel {
	case vmm.AccelKVM:
		cpu = "host"
	case vmm.AccelTCG:
		// max enables every feature TCG can emulate, which a stock kernel
		// handles better than the conservative default model.
		cpu = "max"
	default:
		return nil, fmt.Errorf("qemu args: accel %q is not resolved to %q or %q", cfg.Accel, vmm.AccelKVM, vmm.AccelTCG)
	}
	dir := cfg.StateDir

	machine := "q35,accel=" + string(cfg.Accel)
	firmware := []string{"-bios", cfg.Firmware}
	var objects []string
	if cfg.TEE.Confidential() {
		t, err := teeArgs(cfg)
		if err != nil {
			return nil, err
		}
		machine += t.machine
		if t.cpu != "" {
			cpu = t.cpu
		}
		firmware, objects = t.firmware, t.objects
	}
	if m := cfg.Memory; m.File != "" && !cfg.TEE.Confidential() {
		share := "off"
		if m.Shared {
			share = "on"
		}
		objects = append(objects, "-object", fmt.Sprintf("memory-backend-file,id=%s,mem-path=%s,size=%dM,share=%s", fileMemID, m.File, cfg.MemoryMiB, share))
		machine += ",memory-backend=" + fileMemID
	}

	a := []string{
		"-name", "scc-" + cfg.ID,
		"-M", machine,
		"-cpu", cpu,
		"-smp", smp(cfg),
		"-m", memory(cfg),
	}
	a = append(a, objects...)
	a = append(a, firmware...)
	a = append(a, "-kernel", cfg.Kernel)
	if cfg.Initrd != "" {
		a = append(a, "-initrd", cfg.Initrd)
	}
	if cfg.Cmdline != "" {
		a = append(a, "-append", cfg.Cmdline)
	}
	a = append(a,
		"-nodefaults", "-no-user-config",
		"-nographic", "-display", "none",
		"-no-reboot",
		"-serial", "file:"+cfg.ConsoleLog(),
		"-qmp", "unix:"+filepath.Join(dir, QMPSocketName)+",server=on,wait=off",
		"-pidfile", filepath.Join(dir, PidFileName),
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent,path="+cfg.AgentAddr()+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,id="+agentPortID+",name="+cfg.AgentPort,
	)
	if cfg.ForwardPort != "" {
		a = append(a,
			"-chardev", "socket,id=forward,path="+cfg.ForwardAddr()+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=forward,id=forwardport,name="+cfg.ForwardPort,
		)
	}
	switch {
	case cfg.TPM != nil && cfg.TPM.Port != "":
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+cfg.TPM.Socket,
			"-device", "virtserialport,bus=vser0.0,chardev=chrtpm,id=tpmport,name="+cfg.TPM.Port,
		)
	case cfg.TPM != nil:
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+cfg.TPM.Socket,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-crb,tpmdev=tpm0",
		)
	}
	if cfg.VMGenID {
		// A new value at every QEMU start, restores included.
		a = append(a, "-device", "vmgenid,guid=auto")
	}
	// Tap files are passed as extra files: the first is fd 3.
	if cfg.HotplugPorts > 0 {
		// Native PCIe hotplug: the guest's pciehp driver handles it
		// without ACPI hotplug support from the firmware.
		a = append(a, "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off")
		for i := 0; i < cfg.HotplugPorts; i++ {
			n := strconv.Itoa(i)
			a = append(a, "-device", "pcie-root-port,id=hp"+n+",bus=pcie.0,chassis="+strconv.Itoa(i+1))
		}
	}
	for i, n := range cfg.Net {
		id := "net" + strconv.Itoa(i)
		a = append(a, "-netdev", "tap,id="+id+",fd="+strconv.Itoa(3+i))
		if !n.Hotplug {
			a = append(a, "-device", "virtio-net-pci,netdev="+id+",mac="+n.MAC.String())
		}
	}
	for i, s := range cfg.Shares {
		id := "fs" + strconv.Itoa(i)
		a = append(a,
			"-fsdev", "local,id="+id+",path="+s.Path+",security_model=none",
			"-device", "virtio-9p-pci,fsdev="+id+",mount_tag="+s.Tag,
		)
	}
	a = append(a, "-device", "virtio-rng-pci")
	if incoming != "" {
		a = append(a, "-S", "-incoming", incoming)
	}
	return a, nil
}

// fileMemID names the memory backend of a VM whose memory is a file.
const fileMemID = "ram0"

// memorySlots is how many DIMMs a VM that can grow takes: Grow adds one
// each time it adds memory.
const memorySlots = 8

// smp is the -smp value: the vCPUs, and how many the VM can grow to.
func smp(cfg vmm.Config) string {
	s := strconv.Itoa(cfg.VCPUs)
	if cfg.MaxVCPUs > cfg.VCPUs {
		s += ",maxcpus=" + strconv.Itoa(cfg.MaxVCPUs)
	}
	return s
}

// memory is the -m value: the memory in MiB and, for a VM that can grow,
// the DIMM slots and the most memory.
func memory(cfg vmm.Config) string {
	s := strconv.Itoa(cfg.MemoryMiB)
	if cfg.MaxMemoryMiB > cfg.MemoryMiB {
		s += ",slots=" + strconv.Itoa(memorySlots) + ",maxmem=" + strconv.Itoa(cfg.MaxMemoryMiB) + "M"
	}
	return s
}
