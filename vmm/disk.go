package vmm

import "context"

// DiskHotplugger is implemented by VMs that can take read-only disks
// while they run, each into a free one of Config.HotplugPorts (ports that
// hotplugged network devices use are not free).
type DiskHotplugger interface {
	// AddDisk attaches the file at path read-only as a virtio-blk disk
	// whose serial (at most 20 bytes: letters, digits, '-') the guest
	// finds it by.
	AddDisk(ctx context.Context, path, serial string) error
}
