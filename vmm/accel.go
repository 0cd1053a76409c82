package vmm

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Accel selects how the VMM executes guest code.
type Accel string

const (
	AccelAuto Accel = "auto" // KVM when usable with hardware virtualisation, else TCG
	AccelKVM  Accel = "kvm"  // hardware virtualisation through /dev/kvm
	AccelTCG  Accel = "tcg"  // QEMU's software emulation; slow but runs anywhere
)

func (a Accel) valid() bool {
	switch a {
	case AccelAuto, AccelKVM, AccelTCG:
		return true
	}
	return false
}

// Host files DetectAccel inspects.
const (
	kvmDevice = "/dev/kvm"
	cpuInfo   = "/proc/cpuinfo"
)

// DetectAccel picks the accelerator AccelAuto stands for on this host and
// says why, in words meant for `scc check`.
func DetectAccel() (Accel, string) {
	return detectAccel(kvmDevice, cpuInfo)
}

// ResolveAccel turns AccelAuto into a concrete accelerator; KVM and TCG
// are returned unchanged. The reason is empty unless detection ran.
func ResolveAccel(a Accel) (Accel, string, error) {
	switch a {
	case AccelKVM, AccelTCG:
		return a, "", nil
	case AccelAuto, "":
		acc, why := DetectAccel()
		return acc, why, nil
	}
	return "", "", fmt.Errorf("resolve accel %q: want %q, %q or %q", a, AccelAuto, AccelKVM, AccelTCG)
}

func detectAccel(kvmPath, cpuinfoPath string) (Accel, string) {
	f, err := os.OpenFile(kvmPath, os.O_RDWR, 0)
	if err != nil {
		return AccelTCG, fmt.Sprintf("%s not usable: %v", kvmPath, err)
	}
	f.Close()

	flag, err := virtFlag(cpuinfoPath)
	if err != nil {
		return AccelTCG, fmt.Sprintf("%s opens but reading CPU flags failed: %v", kvmPath, err)
	}
	if flag == "" {
		// A paravirtual KVM (PVM) offers /dev/kvm without vmx/svm; stock
		// guest kernels crash on it.
		return AccelTCG, fmt.Sprintf("%s opens but the CPU flags in %s show neither vmx nor svm (nested or paravirtual KVM that stock guest kernels cannot use)", kvmPath, cpuinfoPath)
	}
	return AccelKVM, fmt.Sprintf("%s opens read-write and the CPU advertises %s", kvmPath, flag)
}

// virtFlag returns "vmx" or "svm" when a flags line of cpuinfo lists it,
// and "" when none does.
func virtFlag(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(val) {
			if fl == "vmx" || fl == "svm" {
				return fl, nil
			}
		}
	}
	return "", sc.Err()
}
