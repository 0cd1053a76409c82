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
// device of Config.Net[i] to hotplug port i. Its backend is on QEMU's
// command line, or, for an adopted VM whose QEMU started before the
// sandbox existed, added here with the tap passed over QMP.
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
	if v.adopted {
		// QEMU started before the tap existed: its backend comes now, the
		// tap's descriptor passed over QMP.
		if v.cfg.Net[i].Tap == nil {
			return fmt.Errorf("add net device %d: no tap: %w", i, errdefs.ErrInvalidArgument)
		}
		fdname := "tap" + n
		if err := c.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": fdname}, v.cfg.Net[i].Tap, nil); err != nil {
			return fmt.Errorf("add net device %d: pass tap: %w", i, err)
		}
		if err := c.Execute(ctx, "netdev_add", map[string]any{"type": "tap", "id": "net" + n, "fd": fdname}, nil); err != nil {
			return fmt.Errorf("add net device %d: backend: %w", i, err)
		}
	}
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
	v.mu.Lock()
	if v.nics == nil {
		v.nics = make(map[int]bool)
	}
	v.nics[i] = true
	v.mu.Unlock()
	return nil
}
