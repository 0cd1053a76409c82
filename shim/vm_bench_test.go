package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// vmBenchConfig is the configuration of the benchmarks that start VMs: the
// guest image of this tree (GUEST_DIR or build/guest), state and
// templates in a temporary directory.
func vmBenchConfig(b *testing.B) Config {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("starting VMs needs root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		b.Skip("qemu-system-x86_64 is not installed")
	}
	guest := os.Getenv("GUEST_DIR")
	if guest == "" {
		guest, _ = filepath.Abs("../build/guest")
	}
	if _, err := os.Stat(filepath.Join(guest, "manifest.json")); err != nil {
		b.Skipf("no guest image in %s (make guest)", guest)
	}
	dir, err := os.MkdirTemp("/tmp", "scc-vmbench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	cfg := DefaultConfig()
	cfg.GuestDir = guest
	cfg.StateDir = filepath.Join(dir, "run")
	cfg.Snapshot = SnapshotConfig{Dir: filepath.Join(dir, "snapshots")}
	cfg.VM.LogDir = ""
	cfg.VM.BootTimeout.Duration = 2 * time.Minute
	return cfg
}

// BenchmarkSandboxStart measures a sandbox VM's start until its agent
// answers: booted, and restored from the configuration's template.
//
//	go test -run '^$' -bench SandboxStart -benchtime 5x ./shim/
func BenchmarkSandboxStart(b *testing.B) {
	for _, restore := range []bool{false, true} {
		name := "boot"
		if restore {
			name = "restore"
		}
		b.Run(name, func(b *testing.B) {
			cfg := vmBenchConfig(b)
			ctx := context.Background()
			if restore {
				cfg.Snapshot.Enabled = true
				if _, err := CreateTemplate(ctx, cfg); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; b.Loop(); i++ {
				sb, err := startSandbox(ctx, cfg, "", fmt.Sprintf("bench-%s-%d", name, i), nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := sb.stop(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkAgentRoundTrip measures one ttrpc request to the guest agent
// and its answer over the virtio-serial channel (Ping).
//
//	go test -run '^$' -bench AgentRoundTrip ./shim/
func BenchmarkAgentRoundTrip(b *testing.B) {
	cfg := vmBenchConfig(b)
	ctx := context.Background()
	sb, err := startSandbox(ctx, cfg, "", "bench-ping", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.stop(ctx)
	for b.Loop() {
		if _, err := sb.agent.Ping(ctx, &agent.PingRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
