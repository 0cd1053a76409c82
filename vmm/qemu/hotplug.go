package qemu

import (
	"context"
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

var _ vmm.NetHotplugger = (*VM)(nil)

// AddNetDevice implements vmm.NetHotplugger: it adds the virtio-net
// device of Config.Net[i] (whose backend is on the command line) to
// hotplug port i.
func (v *VM) AddNetDevice(ctx context.Context, i int) error {
	if i < 0 || i >= len(v.cfg.Net) || !v.cfg.Net[i].Hotplug {
		return fmt.Errorf("add net device %d: no such hotplug device: %w", i, errdefs.ErrInvalidArgument)
	}
	if i >= v.cfg.HotplugPorts {
		return fmt.Errorf("add net device %d: only %d hotplug ports: %w", i, v.cfg.HotplugPorts, errdefs.ErrFailedPrecondition)
	}
	c := v.client()
	if c == nil {
		return fmt.Errorf("add net device: vm not started: %w", errdefs.ErrFailedPrecondition)
	}
	n := strconv.Itoa(i)
	args := map[string]any{
		"driver": "virtio-net-pci",
		"id":     "nic" + n,
		"netdev": "net" + n,
		"bus":    "hp" + n,
		"mac":    v.cfg.Net[i].MAC.String(),
	}
	if err := c.Execute(ctx, "device_add", args, nil); err != nil {
		return fmt.Errorf("add net device %d: %w", i, err)
	}
	return nil
}
