package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

var _ vmm.DiskHotplugger = (*VM)(nil)

// serialPattern is what a virtio-blk serial may hold here: it names QEMU
// objects too.
var serialPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,20}$`)

// AddDisk implements vmm.DiskHotplugger: a read-only raw file node and a
// virtio-blk-pci device on the first free hotplug port.
func (v *VM) AddDisk(ctx context.Context, path, serial string) error {
	if !serialPattern.MatchString(serial) {
		return fmt.Errorf("add disk: serial %q: want 1 to 20 letters, digits or '-': %w", serial, errdefs.ErrInvalidArgument)
	}
	c := v.client()
	if c == nil {
		return fmt.Errorf("add disk: vm not started: %w", errdefs.ErrFailedPrecondition)
	}
	port, err := v.takePort(serial)
	if err != nil {
		return err
	}
	node := "disk-" + serial
	if err := c.Execute(ctx, "blockdev-add", map[string]any{
		"driver":    "raw",
		"node-name": node,
		"read-only": true,
		"file":      map[string]any{"driver": "file", "filename": path, "read-only": true},
	}, nil); err != nil {
		v.releasePort(port)
		return fmt.Errorf("add disk %s: %w", path, err)
	}
	if err := c.Execute(ctx, "device_add", map[string]any{
		"driver": "virtio-blk-pci",
		"id":     "blk-" + serial,
		"drive":  node,
		"bus":    "hp" + strconv.Itoa(port),
		"serial": serial,
	}, nil); err != nil {
		_ = c.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
		v.releasePort(port)
		return fmt.Errorf("add disk %s: %w", path, err)
	}
	return nil
}

// takePort reserves the first hotplug port that neither a network device
// nor another disk uses.
func (v *VM) takePort(serial string) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := 0; i < v.cfg.HotplugPorts; i++ {
		if i < len(v.cfg.Net) && v.cfg.Net[i].Hotplug {
			continue
		}
		if _, used := v.disks[i]; used {
			continue
		}
		if v.disks == nil {
			v.disks = make(map[int]string)
		}
		v.disks[i] = serial
		return i, nil
	}
	return 0, fmt.Errorf("add disk %s: all %d hotplug ports are taken: %w", serial, v.cfg.HotplugPorts, errdefs.ErrResourceExhausted)
}

func (v *VM) releasePort(port int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.disks, port)
}
