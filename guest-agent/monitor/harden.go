package monitor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	// Registers cgroups.DevicesSetV2, the eBPF device filter.
	_ "github.com/opencontainers/cgroups/devices"
	devices "github.com/opencontainers/cgroups/devices/config"
	"golang.org/x/sys/unix"
)

// Kernel interfaces the hardening writes.
const (
	securityFS   = "/sys/kernel/security"
	lockdownFile = securityFS + "/lockdown"
	// The capability sets kernel usermode helpers (core_pattern pipes,
	// modprobe) run with. Only CAP_SYS_MODULE may change them, and only
	// by clearing bits.
	umhBset        = "/proc/sys/kernel/usermodehelper/bset"
	umhInheritable = "/proc/sys/kernel/usermodehelper/inheritable"
)

// lockDown puts the kernel in lockdown's integrity mode: no /dev/mem or
// /dev/port, no unsigned modules or kexec images, no BPF writes to user
// memory, no PCI BAR access through sysfs. It is one-way until reboot.
func lockDown() error {
	if err := unix.Mount("securityfs", securityFS, "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("lock down kernel: mount securityfs: %w", err)
	}
	if err := os.WriteFile(lockdownFile, []byte("integrity"), 0); err != nil {
		return fmt.Errorf("lock down kernel: %w", err)
	}
	return nil
}

// disarmHelpers makes kernel usermode helpers run with no capabilities: a
// root process that can set core_pattern or the modprobe path could
// otherwise have the kernel run a program of its choosing outside its
// namespaces and cgroup, with every capability.
func disarmHelpers() error {
	for _, p := range []string{umhBset, umhInheritable} {
		if err := os.WriteFile(p, []byte("0\t0\n"), 0); err != nil {
			return fmt.Errorf("disarm usermode helpers: %w", err)
		}
	}
	return nil
}

// tpmDevices returns the device numbers of every TPM interface of the
// guest: the device the monitor opened, the TPM character devices
// (tpm<N> and tpmrm<N>, whole majors, so that a driver rebound to a new
// minor stays covered) and the legacy /dev/tpm0 misc minor.
func tpmDevices(opened uint64) ([]*devices.Rule, error) {
	deny := func(major, minor int64) *devices.Rule {
		return &devices.Rule{Type: devices.CharDevice, Major: major, Minor: minor, Permissions: "rwm", Allow: false}
	}
	rules := []*devices.Rule{deny(10, 224)} // misc TPM_MINOR
	if opened != 0 {
		rules = append(rules, deny(int64(unix.Major(opened)), int64(unix.Minor(opened))))
	}
	majors, err := charMajors("/proc/devices", "tpm", "tpmrm")
	if err != nil {
		return nil, err
	}
	for _, m := range majors {
		rules = append(rules, deny(m, devices.Wildcard))
	}
	return rules, nil
}

// charMajors returns the majors /proc/devices lists for character
// drivers of the given names.
func charMajors(procDevices string, names ...string) ([]int64, error) {
	f, err := os.Open(procDevices)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int64
	inChar := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch line {
		case "Character devices:":
			inChar = true
			continue
		case "Block devices:":
			inChar = false
			continue
		}
		fields := strings.Fields(line)
		if !inChar || len(fields) != 2 {
			continue
		}
		for _, n := range names {
			if fields[1] == n {
				if m, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					out = append(out, m)
				}
			}
		}
	}
	return out, sc.Err()
}

// denyDevices attaches an eBPF device filter to the cgroup at dir that
// allows every device but the ones rules deny. It applies to every
// process below dir, whatever filters their own cgroups add (cgroup v2
// runs them all, and all must allow).
func denyDevices(dir string, rules []*devices.Rule) error {
	all := append([]*devices.Rule{{
		Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard,
		Permissions: "rwm", Allow: true,
	}}, rules...)
	if err := cgroups.DevicesSetV2(dir, &cgroups.Resources{Devices: all}); err != nil {
		return fmt.Errorf("attach device filter to %s: %w", dir, err)
	}
	return nil
}

// hideTPMNodes takes every permission off the TPM device nodes in dev and
// off the one the monitor opened: only a process that may override file
// permissions can open them (the monitor; the agent, which may too, is
// stopped by the device filter), not one that merely runs as root, such
// as a usermode helper.
func hideTPMNodes(dev, opened string) error {
	nodes, _ := filepath.Glob(filepath.Join(dev, "tpm*"))
	if opened != "" {
		nodes = append(nodes, opened)
	}
	var errs []error
	for _, n := range nodes {
		if err := os.Chmod(n, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hide tpm device nodes: %w", err)
	}
	return nil
}
