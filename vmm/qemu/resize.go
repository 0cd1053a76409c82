package qemu

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

var _ vmm.Resizer = (*VM)(nil)

// memoryBlockMiB is the unit of memory Grow adds: the memory block size of
// an x86-64 Linux guest with less than 64 GiB, the least it can online.
const memoryBlockMiB = 128

// grown is what Grow added to a VM.
type grown struct {
	vcpus     int
	memoryMiB int
	dimms     int
}

// Size implements vmm.Resizer.
func (v *VM) Size() (vcpus, memoryMiB int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cfg.VCPUs + v.grown.vcpus, v.cfg.MemoryMiB + v.grown.memoryMiB
}

// Grow implements vmm.Resizer: it plugs vCPUs (device_add of the CPUs
// QEMU lists as hotpluggable) and one DIMM of memory, rounded up to whole
// memory blocks.
func (v *VM) Grow(ctx context.Context, vcpus, memoryMiB int) error {
	v.op.Lock()
	defer v.op.Unlock()
	if err := v.expect("grow", running, paused); err != nil {
		return err
	}
	haveCPUs, haveMiB := v.Size()
	if vcpus > haveCPUs {
		if vcpus > v.cfg.MaxVCPUs {
			return fmt.Errorf("grow vm to %d vcpus: at most %d: %w", vcpus, max(v.cfg.MaxVCPUs, v.cfg.VCPUs), errdefs.ErrFailedPrecondition)
		}
		if err := v.addVCPUs(ctx, vcpus-haveCPUs); err != nil {
			return err
		}
	}
	if memoryMiB > haveMiB {
		add := (memoryMiB - haveMiB + memoryBlockMiB - 1) / memoryBlockMiB * memoryBlockMiB
		if haveMiB+add > v.cfg.MaxMemoryMiB {
			return fmt.Errorf("grow vm to %d MiB: at most %d: %w", memoryMiB, max(v.cfg.MaxMemoryMiB, v.cfg.MemoryMiB), errdefs.ErrFailedPrecondition)
		}
		if err := v.addMemory(ctx, add); err != nil {
			return err
		}
	}
	return nil
}

// hotpluggableCPU is an entry of query-hotpluggable-cpus.
type hotpluggableCPU struct {
	Type    string         `json:"type"`
	Props   map[string]any `json:"props"`
	QOMPath string         `json:"qom-path"`
}

func (c hotpluggableCPU) id(key string) int {
	n, _ := c.Props[key].(float64)
	return int(n)
}

// addVCPUs plugs n of the free CPU slots, lowest first.
func (v *VM) addVCPUs(ctx context.Context, n int) error {
	c := v.client()
	var slots []hotpluggableCPU
	if err := c.Execute(ctx, "query-hotpluggable-cpus", nil, &slots); err != nil {
		return fmt.Errorf("grow vm: list cpu slots: %w", err)
	}
	var free []hotpluggableCPU
	for _, s := range slots {
		if s.QOMPath == "" {
			free = append(free, s)
		}
	}
	sort.Slice(free, func(i, j int) bool {
		for _, k := range []string{"socket-id", "core-id", "thread-id"} {
			if a, b := free[i].id(k), free[j].id(k); a != b {
				return a < b
			}
		}
		return false
	})
	if len(free) < n {
		return fmt.Errorf("grow vm: %d free cpu slots, %d wanted: %w", len(free), n, errdefs.ErrFailedPrecondition)
	}
	for _, s := range free[:n] {
		v.mu.Lock()
		id := "vcpu" + strconv.Itoa(v.cfg.VCPUs+v.grown.vcpus)
		v.mu.Unlock()
		args := map[string]any{"driver": s.Type, "id": id}
		for k, val := range s.Props {
			args[k] = val
		}
		if err := c.Execute(ctx, "device_add", args, nil); err != nil {
			return fmt.Errorf("grow vm: add %s: %w", id, err)
		}
		v.mu.Lock()
		v.grown.vcpus++
		v.mu.Unlock()
	}
	return nil
}

// addMemory plugs one DIMM of mib MiB.
func (v *VM) addMemory(ctx context.Context, mib int) error {
	v.mu.Lock()
	n := v.grown.dimms
	v.mu.Unlock()
	if n == memorySlots {
		return fmt.Errorf("grow vm: all %d memory slots used: %w", memorySlots, errdefs.ErrFailedPrecondition)
	}
	c := v.client()
	mem, dimm := "mem"+strconv.Itoa(n), "dimm"+strconv.Itoa(n)
	if err := c.Execute(ctx, "object-add", map[string]any{"qom-type": "memory-backend-ram", "id": mem, "size": int64(mib) << 20}, nil); err != nil {
		return fmt.Errorf("grow vm: add %d MiB of memory: %w", mib, err)
	}
	if err := c.Execute(ctx, "device_add", map[string]any{"driver": "pc-dimm", "id": dimm, "memdev": mem}, nil); err != nil {
		c.Execute(context.WithoutCancel(ctx), "object-del", map[string]any{"id": mem}, nil)
		return fmt.Errorf("grow vm: plug %d MiB of memory: %w", mib, err)
	}
	v.mu.Lock()
	v.grown.dimms++
	v.grown.memoryMiB += mib
	v.mu.Unlock()
	return nil
}
