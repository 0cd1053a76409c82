package shim

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
)

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
			cfg := vmBenchConfig(b)
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
