package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

const (
	// sysDevicesSystem is where the kernel lists CPUs and memory blocks.
	sysDevicesSystem = "/sys/devices/system"
	// onlineWait bounds how long OnlineResources waits for what the host
	// plugged to show in the guest (ACPI hotplug is asynchronous).
	onlineWait = 10 * time.Second
	// onlinePoll is how often it looks.
	onlinePoll = 50 * time.Millisecond
)

// OnlineResources brings every offline vCPU and memory block online until
// the guest has what the host asked for.
func (s *Service) OnlineResources(ctx context.Context, req *agentapi.OnlineResourcesRequest) (*agentapi.OnlineResourcesResponse, error) {
	deadline := time.Now().Add(onlineWait)
	for {
		cpus, mib, err := onlineAll(ctx, s.sysDir)
		if err != nil {
			return nil, err
		}
		if (cpus >= int(req.GetVcpus()) && mib >= req.GetMemoryMib()) || time.Now().After(deadline) {
			return &agentapi.OnlineResourcesResponse{Vcpus: uint32(cpus), MemoryMib: mib}, nil
		}
		select {
		case <-time.After(onlinePoll):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// onlineAll brings the offline CPUs and memory blocks below dir (the
// kernel's /sys/devices/system) online, and returns how many CPUs are
// online and how much memory the online blocks hold.
func onlineAll(ctx context.Context, dir string) (cpus int, memoryMiB uint64, _ error) {
	cpuDirs, err := filepath.Glob(filepath.Join(dir, "cpu", "cpu[0-9]*"))
	if err != nil {
		return 0, 0, err
	}
	for _, d := range cpuDirs {
		// A CPU that cannot go offline (the boot CPU) has no "online".
		on, err := os.ReadFile(filepath.Join(d, "online"))
		if os.IsNotExist(err) || strings.TrimSpace(string(on)) == "1" {
			cpus++
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", d, err)
		}
		if err := os.WriteFile(filepath.Join(d, "online"), []byte("1"), 0); err != nil {
			log.G(ctx).WithError(err).WithField("cpu", filepath.Base(d)).Warn("bring cpu online")
			continue
		}
		cpus++
	}

	b, err := os.ReadFile(filepath.Join(dir, "memory", "block_size_bytes"))
	if err != nil {
		return 0, 0, fmt.Errorf("memory block size: %w", err)
	}
	blockSize, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("memory block size: %w", err)
	}
	blocks, err := filepath.Glob(filepath.Join(dir, "memory", "memory[0-9]*"))
	if err != nil {
		return 0, 0, err
	}
	var online uint64
	for _, d := range blocks {
		st, err := os.ReadFile(filepath.Join(d, "state"))
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", d, err)
		}
		switch strings.TrimSpace(string(st)) {
		case "online":
			online++
		case "offline":
			if err := os.WriteFile(filepath.Join(d, "state"), []byte("online"), 0); err != nil {
				log.G(ctx).WithError(err).WithField("block", filepath.Base(d)).Warn("bring memory online")
				continue
			}
			online++
		}
	}
	return cpus, online * blockSize >> 20, nil
}
