package shim

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLimitsOf(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name string
		res  *specs.LinuxResources
		want limits
	}{
		{"none", nil, limits{}},
		{"no limits", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024)}}, limits{}},
		{"two cpus", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000)}}, limits{vcpus: 2}},
		{"part of a cpu is one", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}, limits{vcpus: 2}},
		{"unlimited quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}, limits{}},
		{"memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(300<<20 + 1)}}, limits{memoryMiB: 301}},
	} {
		if got := limitsOf(tc.res); got != tc.want {
			t.Errorf("%s: limitsOf = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestVMMaxima(t *testing.T) {
	cfg := DefaultConfig()
	cfg.VM.VCPUs, cfg.VM.MemoryMiB = 2, 1024
	cfg.VM.MaxVCPUs, cfg.VM.MaxMemoryMiB = 4, 4096
	if v, m := vmMaxima(cfg); v != 4 || m != 4096 {
		t.Errorf("configured maxima: %d, %d", v, m)
	}
	// At or below the size: the VM keeps it.
	cfg.VM.MaxVCPUs, cfg.VM.MaxMemoryMiB = 1, 512
	if v, m := vmMaxima(cfg); v != 2 || m != 1024 {
		t.Errorf("maxima below the size: %d, %d, want 2, 1024", v, m)
	}
	// 0: the host's, never below the size.
	cfg.VM.MaxVCPUs, cfg.VM.MaxMemoryMiB = 0, 0
	if v, m := vmMaxima(cfg); v < 2 || m < 1024 {
		t.Errorf("host maxima: %d, %d", v, m)
	}
}
