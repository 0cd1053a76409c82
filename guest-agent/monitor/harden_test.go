package monitor

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	devices "github.com/opencontainers/cgroups/devices/config"
	"golang.org/x/sys/unix"
)

func TestTPMDevices(t *testing.T) {
	procDevices := filepath.Join(t.TempDir(), "devices")
	os.WriteFile(procDevices, []byte("Character devices:\n  1 mem\n 10 misc\n253 tpmrm\n254 tpm\n\nBlock devices:\n254 tpm\n"), 0o644)
	majors, err := charMajors(procDevices, "tpm", "tpmrm")
	if err != nil || !slices.Equal(majors, []int64{253, 254}) {
		t.Fatalf("charMajors = %v, %v; want the two character majors", majors, err)
	}

	// On this machine: the rules deny the opened device and the legacy
	// tpm0 minor, whatever the TPM drivers.
	rules, err := tpmDevices(unix.Mkdev(250, 3))
	if err != nil {
		t.Fatal(err)
	}
	denied := func(major, minor int64) bool {
		return slices.ContainsFunc(rules, func(r *devices.Rule) bool {
			return !r.Allow && r.Type == devices.CharDevice && r.Major == major && (r.Minor == minor || r.Minor == devices.Wildcard)
		})
	}
	if !denied(250, 3) || !denied(10, 224) {
		t.Errorf("rules %v miss the opened device or tpm0", rules)
	}
}
