package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// benchConfig is the shim configuration of the boot benchmarks: the guest
// image of this tree (GUEST_DIR or build/guest), state and templates in
// temporary directories.
func benchConfig(b *testing.B) Config {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("booting VMs needs root")
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
	cfg := DefaultConfig()
	cfg.GuestDir = guest
	dir, err := os.MkdirTemp("/tmp", "scc-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	cfg.StateDir = filepath.Join(dir, "run")
	cfg.Snapshot = SnapshotConfig{Dir: filepath.Join(dir, "snapshots")}
	cfg.VM.LogDir = ""
	cfg.VM.BootTimeout.Duration = 2 * time.Minute
	return cfg
}

// BenchmarkBootToAgentReady measures a sandbox VM's start, from QEMU's
// launch to the agent's first answer: a cold boot, and a restore from a
// template, each with and without a vTPM.
//
//	go test -run '^$' -bench BootToAgentReady -benchtime 5x ./shim/
func BenchmarkBootToAgentReady(b *testing.B) {
	for _, tc := range []struct {
		name     string
		tpm      bool
		template bool
	}{
		{"boot", false, false},
		{"boot-vtpm", true, false},
		{"restore", false, true},
		{"restore-vtpm", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := benchConfig(b)
			cfg.VM.TPM = tc.tpm
			if tc.tpm {
				if _, err := exec.LookPath("swtpm"); err != nil {
					b.Skip("swtpm is not installed")
				}
			}
			ctx := context.Background()
			if tc.template {
				cfg.Snapshot.Enabled = true
				if _, err := CreateTemplate(ctx, cfg); err != nil {
					b.Skipf("no template for this configuration: %v", err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sb, err := startSandbox(ctx, cfg, "", fmt.Sprintf("bench-%d", i), nil)
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
