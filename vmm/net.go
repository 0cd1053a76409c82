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

// TPM attaches a TPM 2.0 emulator (swtpm) to the guest as a CRB device; the
// guest sees /dev/tpm0. The caller runs the emulator.
type TPM struct {
	// Socket is the emulator's control socket (swtpm --ctrl type=unixio).
	Socket string
}
