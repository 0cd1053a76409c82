package vmm

import (
	"context"
	"fmt"
	"net"
	"os"
)

// NetDevice is a virtio-net interface of the guest backed by a tap device
// that the caller opened (typically inside a pod's network namespace, which
// the VMM process is not in).
type NetDevice struct {
	// Tap is the open tap device (/dev/net/tun bound to the interface).
	// The driver passes it to the VMM; the caller closes its copy after
	// Start.
	Tap *os.File
	// MAC is the guest interface's address: the one of the pod interface
	// the tap mirrors, so the pod's peers see no change.
	MAC net.HardwareAddr
	// Hotplug leaves the guest device out of the command line: only the
	// backend is there, and the device is added later (see NetHotplugger),
	// into one of Config.HotplugPorts. A VM restored from a template, which
	// had no network device, gets its interface this way.
	Hotplug bool
}

// NetHotplugger is implemented by VMs that can add a network device to a
// running guest.
type NetHotplugger interface {
	// AddNetDevice plugs Config.Net[i], whose Hotplug is set, into
	// hotplug port i.
	AddNetDevice(ctx context.Context, i int) error
}

func (n NetDevice) validate() error {
	if n.Tap == nil {
		return fmt.Errorf("net device: no tap file")
	}
	if len(n.MAC) != 6 {
		return fmt.Errorf("net device: MAC %q is not an Ethernet address", n.MAC)
	}
	return nil
}

// TPM attaches a TPM 2.0 emulator (swtpm) to the guest, which the caller
// runs, in one of two ways:
//
//   - as a virtio-serial port named Port, carrying TPM commands between
//     the guest and the emulator's TPM command socket (swtpm --server
//     type=unixio). The TPM's state is the emulator's alone, never in the
//     VM's saved state: a VM restored from a snapshot gets the new
//     emulator it is given, with an identity of its own. The guest's
//     kernel sees no TPM; its trusted monitor speaks to the port.
//   - without Port, as a CRB TPM device (tpm-crb) backed by the
//     emulator's control socket (swtpm --ctrl type=unixio): the guest
//     kernel sees /dev/tpm0. QEMU saves the TPM's state, identity
//     included, with the VM, so every VM restored from a snapshot has the
//     same TPM.
type TPM struct {
	// Socket is the emulator's command socket (with Port) or control
	// socket.
	Socket string
	// Port names the guest's virtio-serial port for the TPM.
	Port string
}

func (t TPM) validate() error {
	if t.Socket == "" {
		return fmt.Errorf("tpm: socket is empty")
	}
	if t.Port != "" && !namePattern.MatchString(t.Port) {
		return fmt.Errorf("tpm: port %q: want letters, digits, '.', '_' and '-'", t.Port)
	}
	return nil
}
