package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Mode is one runtime configuration under test.
type Mode struct {
	// Key names the mode in the report: "runc", "scc-cold", "scc-restore".
	Key string `json:"key"`
	// Name is the mode's label in tables and plots.
	Name string `json:"name"`
	// Runtime is the containerd runtime type.
	Runtime string `json:"runtime"`
	// VMMemoryMiB and VCPUs size the VM of scc modes.
	VMMemoryMiB int `json:"vm_memory_mib,omitempty"`
	VCPUs       int `json:"vcpus,omitempty"`
	// Template is set when the sandbox VM is restored from a template
	// made before the measurements.
	Template bool `json:"template"`
	// Pool is the number of ready VMs kept for the mode (scc's pool.size):
	// its sandboxes take a VM restored and paused beforehand.
	Pool int `json:"pool,omitempty"`
	// Reuse is set when the mode's sandboxes take the VM of an earlier
	// sandbox, cleaned in place (vm.start = "reuse").
	Reuse bool `json:"reuse,omitempty"`
}

// Mode keys.
const (
	ModeRunc       = "runc"
	ModeSCCCold    = "scc-cold"
	ModeSCCRestore = "scc-restore"
	ModeSCCPool    = "scc-pool"
	ModeSCCReuse   = "scc-reuse"
)

// UnavailableModes are the modes the evaluation is meant to cover once
// scc implements them; they are listed, not measured. There are none.
var UnavailableModes []string

// Report is everything one benchmark run measured, with the machine it
// ran on. It is what --json writes and what tables, plots and the
// markdown are rendered from.
type Report struct {
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	// Start holds the ctr run --rm samples of each mode, measured
	// alternately: cold start compares scc-cold to runc, warm start
	// scc-restore to runc.
	Start []Series `json:"start,omitempty"`
	// Templates are the VM templates made before the measurements.
	Templates []TemplateBuild `json:"templates,omitempty"`
	ScaleOut  []ScaleSeries   `json:"scale_out,omitempty"`
	// ScaleOutStopped says why scale-out ran fewer runs than asked.
	ScaleOutStopped string         `json:"scale_out_stopped,omitempty"`
	Memory          []MemoryResult `json:"memory,omitempty"`
	// PooledVMs is the memory of idle pooled VMs (ready, paused, no
	// sandbox yet), one "sandbox" per VM.
	PooledVMs *MemoryResult `json:"pooled_vms,omitempty"`
	// Image compares where a container's image comes from.
	Image []ImageSeries `json:"image,omitempty"`
	// Unavailable lists modes not measured because scc lacks them.
	Unavailable []string      `json:"unavailable_modes"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// Settings are the parameters of the run.
type Settings struct {
	Runs    int    `json:"runs"`
	Command string `json:"command"`
	// StartVMMemoryMiB sizes the scc VMs of the start measurements.
	StartVMMemoryMiB int `json:"start_vm_memory_mib"`
	// ScaleVMMemoryMiB sizes the scc VMs of scale-out and memory.
	ScaleVMMemoryMiB int           `json:"scale_vm_memory_mib"`
	ScaleN           []int         `json:"scale_n"`
	ScaleTimeout     time.Duration `json:"scale_timeout_ns"`
	ScaleBudget      time.Duration `json:"scale_budget_ns"`
	IdleSandboxes    int           `json:"idle_sandboxes"`
	Settle           time.Duration `json:"settle_ns"`
	MemoryBudget     uint64        `json:"memory_budget_bytes"`
	// KernelParams were added to the guest kernel command line.
	KernelParams []string `json:"kernel_params,omitempty"`
}

// Series are the samples of one mode.
type Series struct {
	Mode Mode `json:"mode"`
	// First is the first, unmeasured run after containerd started (page
	// cache and containerd warm-up); it is not in Samples.
	First   time.Duration   `json:"first_ns"`
	Samples []time.Duration `json:"samples_ns"`
}

// TemplateBuild is the making of one VM template.
type TemplateBuild struct {
	VMMemoryMiB int           `json:"vm_memory_mib"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// ScaleSeries is the scale-out curve of one mode.
type ScaleSeries struct {
	Mode   Mode         `json:"mode"`
	Points []ScalePoint `json:"points"`
}

// ScalePoint holds the times from starting N containers at once until
// all of them exited.
type ScalePoint struct {
	N       int             `json:"n"`
	Samples []time.Duration `json:"samples_ns"`
	// Failures are the errors of the batches that failed: they have no
	// sample.
	Failures []string `json:"failures,omitempty"`
	// Skipped says why runs were not tried (a timeout at this or a
	// smaller N, or the time budget).
	Skipped string `json:"skipped,omitempty"`
}

// MemoryResult is the host memory of a mode's idle sandboxes.
type MemoryResult struct {
	Mode      Mode            `json:"mode"`
	Sandboxes []SandboxMemory `json:"sandboxes"`
	Error     string          `json:"error,omitempty"`
}

// SandboxMemory is what one sandbox costs the host: its shim and the
// shim's descendants (QEMU for scc, the container's processes for runc).
type SandboxMemory struct {
	ID        string          `json:"id"`
	Processes []ProcessMemory `json:"processes"`
}

// ProcessMemory is one process of a sandbox.
type ProcessMemory struct {
	PID    int    `json:"pid"`
	Name   string `json:"name"`
	Shim   bool   `json:"shim"`
	Rollup Rollup `json:"rollup"`
}

// Rollup holds the figures of /proc/PID/smaps_rollup, in bytes.
type Rollup struct {
	RSS          uint64 `json:"rss"`
	PSS          uint64 `json:"pss"`
	PrivateClean uint64 `json:"private_clean"`
	PrivateDirty uint64 `json:"private_dirty"`
	Swap         uint64 `json:"swap"`
}

// Total sums the rollups of a sandbox's processes.
func (s SandboxMemory) Total() Rollup {
	var t Rollup
	for _, p := range s.Processes {
		t.add(p.Rollup)
	}
	return t
}

// ShimPSS is the PSS of the sandbox's shim process alone.
func (s SandboxMemory) ShimPSS() uint64 {
	var n uint64
	for _, p := range s.Processes {
		if p.Shim {
			n += p.Rollup.PSS
		}
	}
	return n
}

func (r *Rollup) add(o Rollup) {
	r.RSS += o.RSS
	r.PSS += o.PSS
	r.PrivateClean += o.PrivateClean
	r.PrivateDirty += o.PrivateDirty
	r.Swap += o.Swap
}

// MemorySummary is the mean cost of one idle sandbox of a mode.
type MemorySummary struct {
	Sandboxes int
	PSS       uint64 // mean PSS of a sandbox's processes
	ShimPSS   uint64 // of which the shim process
	RSS       uint64 // mean RSS (counts shared pages in full)
}

// Summary averages the sandboxes: PSS splits pages shared between them,
// so the sum over all sandboxes divided by their count is what one more
// sandbox costs.
func (m MemoryResult) Summary() MemorySummary {
	s := MemorySummary{Sandboxes: len(m.Sandboxes)}
	if s.Sandboxes == 0 {
		return s
	}
	var pss, shim, rss uint64
	for _, sb := range m.Sandboxes {
		t := sb.Total()
		pss += t.PSS
		rss += t.RSS
		shim += sb.ShimPSS()
	}
	n := uint64(s.Sandboxes)
	s.PSS, s.ShimPSS, s.RSS = pss/n, shim/n, rss/n
	return s
}

// Fit is how many sandboxes of this size fit in budget bytes.
func (s MemorySummary) Fit(budget uint64) uint64 {
	if s.PSS == 0 {
		return 0
	}
	return budget / s.PSS
}

// series returns the start series of mode key.
func (r *Report) series(key string) (Series, bool) {
	for _, s := range r.Start {
		if s.Mode.Key == key {
			return s, true
		}
	}
	return Series{}, false
}

// WriteJSON writes the report, indented, to path.
func WriteJSON(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// ReadJSON reads a report WriteJSON wrote.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse report %s: %w", path, err)
	}
	return &r, nil
}
