package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectAccel(t *testing.T) {
	const (
		vmxCPU = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse vmx sse\n"
		svmCPU = "processor\t: 0\nflags\t\t: fpu svm lm\n"
		// A PVM host: /dev/kvm exists but the CPU is not virtualisable.
		pvmCPU = "processor\t: 0\nflags\t\t: fpu vme hypervisor lm\nvmx flags\t: none\n"
	)
	tests := []struct {
		name    string
		kvm     bool   // create a read-write stand-in for /dev/kvm
		cpuinfo string // "" for a missing file
		want    Accel
		why     string // substring of the reason
	}{
		{"kvm with vmx", true, vmxCPU, AccelKVM, "vmx"},
		{"kvm with svm", true, svmCPU, AccelKVM, "svm"},
		{"kvm without vmx or svm", true, pvmCPU, AccelTCG, "neither vmx nor svm"},
		{"no /dev/kvm", false, vmxCPU, AccelTCG, "not usable"},
		{"unreadable cpuinfo", true, "", AccelTCG, "reading CPU flags failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			kvm := filepath.Join(dir, "kvm")
			if tt.kvm {
				if err := os.WriteFile(kvm, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cpuinfo := filepath.Join(dir, "cpuinfo")
			if tt.cpuinfo != "" {
				if err := os.WriteFile(cpuinfo, []byte(tt.cpuinfo), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, why := detectAccel(kvm, cpuinfo)
			if got != tt.want {
				t.Errorf("accel = %q (%s), want %q", got, why, tt.want)
			}
			if !strings.Contains(why, tt.why) {
				t.Errorf("reason = %q, want it to mention %q", why, tt.why)
			}
		})
	}
}

func TestResolveAccel(t *testing.T) {
	for _, a := range []Accel{AccelKVM, AccelTCG} {
		if got, _, err := ResolveAccel(a); err != nil || got != a {
			t.Errorf("ResolveAccel(%q) = %q, %v; want it unchanged", a, got, err)
		}
	}
	for _, a := range []Accel{AccelAuto, ""} {
		got, why, err := ResolveAccel(a)
		if err != nil || (got != AccelKVM && got != AccelTCG) || why == "" {
			t.Errorf("ResolveAccel(%q) = %q, %q, %v; want kvm or tcg with a reason", a, got, why, err)
		}
	}
	if _, _, err := ResolveAccel("hvf"); err == nil {
		t.Error("ResolveAccel(hvf) succeeded")
	}
}
