package shim

import (
	"context"
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agent "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/vmm"
)

// limits is what a container's resources ask of its VM: whole vCPUs for
// its CPU quota and MiB for its memory limit; zero where it sets none.
type limits struct {
	vcpus     int
	memoryMiB int
}

func limitsOf(res *specs.LinuxResources) limits {
	var l limits
	if res == nil {
		return l
	}
	if c := res.CPU; c != nil && c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
		l.vcpus = int((uint64(*c.Quota) + *c.Period - 1) / *c.Period)
	}
	if m := res.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		l.memoryMiB = int((*m.Limit + (1<<20 - 1)) >> 20)
	}
	return l
}

// vmMaxima is what a VM of cfg can grow to: the configured maxima, the
// host's CPUs and memory where they are 0, and never less than its size.
func vmMaxima(cfg Config) (vcpus, memoryMiB int) {
	vcpus, memoryMiB = cfg.VM.MaxVCPUs, cfg.VM.MaxMemoryMiB
	if vcpus == 0 {
		vcpus = runtime.NumCPU()
	}
	if memoryMiB == 0 {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err == nil {
			memoryMiB = int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
		}
	}
	return max(vcpus, cfg.VM.VCPUs), max(memoryMiB, cfg.VM.MemoryMiB)
}

// growForLimits grows the sandbox's VM, where it can, to its base size
// plus the limits of all its containers: raising a container's limits
// above what the VM has adds vCPUs and memory, up to the VM's maxima,
// which the agent brings online. A VM never shrinks.
func (s *service) growForLimits(ctx context.Context, sb *sandbox) error {
	r, ok := sb.vm.(vmm.Resizer)
	if !ok {
		return fmt.Errorf("grow VM: %w: its VMM cannot", errdefs.ErrNotImplemented)
	}
	want := sb.base
	s.mu.Lock()
	for _, c := range s.containers {
		l := c.getLimits()
		want.vcpus += l.vcpus
		want.memoryMiB += l.memoryMiB
	}
	s.mu.Unlock()

	sb.resizeMu.Lock()
	defer sb.resizeMu.Unlock()
	vcpus, mib := r.Size()
	want.vcpus = min(want.vcpus, sb.max.vcpus)
	want.memoryMiB = min(want.memoryMiB, sb.max.memoryMiB)
	if want.vcpus <= vcpus && want.memoryMiB <= mib {
		return nil
	}
	if err := r.Grow(ctx, want.vcpus, want.memoryMiB); err != nil {
		return fmt.Errorf("grow VM: %w", err)
	}
	vcpus, mib = r.Size()
	got, err := sb.agent.OnlineResources(ctx, &agent.OnlineResourcesRequest{Vcpus: uint32(vcpus), MemoryMib: uint64(mib)})
	if err != nil {
		return fmt.Errorf("bring added vCPUs and memory online: %w", fromAgent(err))
	}
	log.G(ctx).WithField("vcpus", got.Vcpus).WithField("memory_mib", got.MemoryMib).Info("VM grown")
	if int(got.Vcpus) < vcpus || got.MemoryMib < uint64(mib) {
		return fmt.Errorf("grew VM to %d vCPUs and %d MiB, but the guest has %d and %d MiB online", vcpus, mib, got.Vcpus, got.MemoryMib)
	}
	return nil
}
