package qemu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm/qemu/qmp"
)

// unplugWait bounds the wait for the guest to release devices being
// removed: a PCIe device goes once the guest's pciehp driver powered its
// slot off, five seconds after the attention button QEMU pressed.
const unplugWait = 30 * time.Second

// DetachDevices removes the network devices AddNetDevice added and the
// disks AddDisk added, with their backends (the tap's descriptor, the
// file): what a sandbox attached to a VM that is to serve another. The
// devices are removed together; the guest lets each go after a few
// seconds.
func (v *VM) DetachDevices(ctx context.Context) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("detach devices", running); err != nil {
		return err
	}
	c := v.client()
	v.mu.Lock()
	nics := make([]int, 0, len(v.nics))
	for i := range v.nics {
		nics = append(nics, i)
	}
	disks := make(map[int]string, len(v.disks))
	for p, s := range v.disks {
		disks[p] = s
	}
	v.mu.Unlock()
	sort.Ints(nics)
	var ids []string
	for _, i := range nics {
		ids = append(ids, "nic"+strconv.Itoa(i))
	}
	for _, s := range disks {
		ids = append(ids, "blk-"+s)
	}
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if err := c.Execute(ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
			return fmt.Errorf("detach device %s: %w", id, err)
		}
	}
	if err := v.waitDeleted(ctx, ids); err != nil {
		return err
	}
	var errs []error
	for _, i := range nics {
		if err := c.Execute(ctx, "netdev_del", map[string]any{"id": "net" + strconv.Itoa(i)}, nil); err != nil {
			errs = append(errs, fmt.Errorf("remove network backend %d: %w", i, err))
		}
	}
	for _, s := range disks {
		if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": "disk-" + s}, nil); err != nil {
			errs = append(errs, fmt.Errorf("remove disk backend %s: %w", s, err))
		}
	}
	v.mu.Lock()
	v.nics, v.disks = nil, nil
	v.mu.Unlock()
	return errors.Join(errs...)
}

// RenewPorts removes the VM's virtio-serial ports (the agent's, the
// forwarded channel's and the vTPM's) and adds them again, under the same
// names: the guest frees the buffers that held what came through the old
// ones. The vTPM's port is then connected to tpmSocket, a new vTPM's
// command socket, which a VM with a vTPM port must be given. The host
// ends of the agent's and the forwarded channel's sockets stay; no host
// connection to them may be open. QMP events from before are dropped, so
// that WaitPortOpen then waits for the guest to open the new agent port.
func (v *VM) RenewPorts(ctx context.Context, tpmSocket string) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("renew ports", running); err != nil {
		return err
	}
	type port struct{ id, chardev, name string }
	ports := []port{{agentPortID, "agent", v.cfg.AgentPort}}
	if v.cfg.ForwardPort != "" {
		ports = append(ports, port{"forwardport", "forward", v.cfg.ForwardPort})
	}
	tpm := v.cfg.TPM != nil && v.cfg.TPM.Port != ""
	switch {
	case tpm && tpmSocket == "":
		return fmt.Errorf("renew ports: the vTPM's port needs a new vTPM: %w", errdefs.ErrInvalidArgument)
	case !tpm && tpmSocket != "":
		return fmt.Errorf("renew ports: the VM has no vTPM port: %w", errdefs.ErrInvalidArgument)
	case tpm:
		ports = append(ports, port{"tpmport", "chrtpm", v.cfg.TPM.Port})
	}
	c := v.client()
	// WaitPortOpen, next, must see the new agent port's events only.
	for drained := false; !drained; {
		select {
		case <-c.Events():
		default:
			drained = true
		}
	}
	var ids []string
	for _, p := range ports {
		if err := c.Execute(ctx, "device_del", map[string]any{"id": p.id}, nil); err != nil {
			return fmt.Errorf("renew ports: remove %s: %w", p.id, err)
		}
		ids = append(ids, p.id)
	}
	if err := v.waitDeleted(ctx, ids); err != nil {
		return fmt.Errorf("renew ports: %w", err)
	}
	if tpm {
		if err := v.removeChardev(ctx, "chrtpm"); err != nil {
			return fmt.Errorf("renew ports: remove vTPM connection: %w", err)
		}
		backend := map[string]any{
			"type": "socket",
			"data": map[string]any{
				"addr":   map[string]any{"type": "unix", "data": map[string]any{"path": tpmSocket}},
				"server": false,
			},
		}
		if err := c.Execute(ctx, "chardev-add", map[string]any{"id": "chrtpm", "backend": backend}, nil); err != nil {
			return fmt.Errorf("renew ports: connect new vTPM: %w", err)
		}
		v.mu.Lock()
		t := *v.cfg.TPM
		t.Socket = tpmSocket
		v.cfg.TPM = &t
		v.mu.Unlock()
	}
	for _, p := range ports {
		args := map[string]any{"driver": "virtserialport", "bus": "vser0.0", "chardev": p.chardev, "id": p.id, "name": p.name}
		if err := v.retryFreed(ctx, "device_add", args); err != nil {
			return fmt.Errorf("renew ports: add %s: %w", p.id, err)
		}
	}
	return nil
}

// waitDeleted polls QEMU's device tree until none of the devices ids is
// left (events could be dropped by then).
func (v *VM) waitDeleted(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, unplugWait)
	defer cancel()
	c := v.client()
	for {
		var props []struct {
			Name string `json:"name"`
		}
		if err := c.Execute(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil {
			return fmt.Errorf("wait for devices to go: %w", err)
		}
		var left []string
		for _, p := range props {
			if slices.Contains(ids, p.Name) {
				left = append(left, p.Name)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devices %v still attached: %w", left, ctx.Err())
		case <-v.done:
			return fmt.Errorf("wait for devices to go: vm exited: %w", v.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// removeChardev removes the chardev of a removed device.
func (v *VM) removeChardev(ctx context.Context, id string) error {
	return v.retryFreed(ctx, "chardev-remove", map[string]any{"id": id})
}

// retryFreed runs a command that needs the chardev of a removed device.
// QEMU lets go of a removed device's chardev when it frees the device,
// some time after the device left the device tree: until then the
// chardev is busy, and the command fails and is tried again.
func (v *VM) retryFreed(ctx context.Context, cmd string, args map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		err := v.client().Execute(ctx, cmd, args, nil)
		var qerr *qmp.Error
		if err == nil || !errors.As(err, &qerr) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}
