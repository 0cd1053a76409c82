package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/qemu"
)

// Machine describes the host the figures come from: without it they
// cannot be compared with another machine's.
type Machine struct {
	CPUModel    string `json:"cpu_model"`
	Cores       int    `json:"cores"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	// Accelerator is what scc's VMs run on here ("kvm" or "tcg"), and
	// AcceleratorReason why.
	Accelerator       string `json:"accelerator"`
	AcceleratorReason string `json:"accelerator_reason"`
	QEMUVersion       string `json:"qemu_version"`
	Containerd        string `json:"containerd"`
	SCCVersion        string `json:"scc_version"`
	GoVersion         string `json:"go_version"`
	// LoadAverage at the start of the run: other work on the machine
	// shows up in the figures.
	LoadAverage string    `json:"load_average"`
	Date        time.Time `json:"date"`
}

// describeMachine gathers what it can; a field it cannot learn stays
// empty rather than failing the benchmark.
func describeMachine(ctx context.Context, opts Options) Machine {
	m := Machine{
		Cores:      runtime.NumCPU(),
		SCCVersion: opts.Version,
		GoVersion:  runtime.Version(),
		Date:       time.Now().UTC().Truncate(time.Second),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = parseCPUModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryBytes = parseMemTotal(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	acc, why := vmm.DetectAccel()
	m.Accelerator, m.AcceleratorReason = string(acc), why
	if v, err := qemu.BinaryVersion(ctx, opts.QEMU); err == nil {
		m.QEMUVersion = v.String()
	}
	if out, err := exec.CommandContext(ctx, opts.BinDir+"/containerd", "--version").Output(); err == nil {
		m.Containerd = strings.TrimSpace(string(out))
	}
	return m
}

// parseCPUModel returns the first "model name" of /proc/cpuinfo.
func parseCPUModel(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseMemTotal returns MemTotal of /proc/meminfo in bytes.
func parseMemTotal(meminfo string) uint64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemTotal" {
			continue
		}
		n, err := parseKB(v)
		if err != nil {
			return 0
		}
		return n
	}
	return 0
}

// parseKB parses a "  1234 kB" value of procfs into bytes.
func parseKB(v string) (uint64, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	if len(f) > 1 && f[1] == "kB" {
		n *= 1024
	}
	return n, nil
}
