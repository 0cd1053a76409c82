package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// table is one block of figures; the text and markdown renderers share
// it so that both show the same numbers.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

// tables lays out the report's figures.
func tables(rep *Report) []table {
	var ts []table
	if t, ok := startTable(rep, "Cold start", "First start of a container whose image is on the node: scc boots its VM (no template).", ModeSCCCold); ok {
		ts = append(ts, t)
	}
	if t, ok := startTable(rep, "Warm start", "Start with the runtime's caches and templates warm: scc restores its VM from the configuration's template.", ModeSCCRestore, ModeSCCPool, ModeSCCReuse); ok {
		if p, ok := rep.series(ModeSCCPool); ok {
			t.notes = append(t.notes, fmt.Sprintf("scc (pool): the sandbox takes one of %d VMs restored and paused beforehand (`[pool] size`), which the shim refills in the background at low priority; each run waits for a full pool first.", p.Mode.Pool))
		}
		if _, ok := rep.series(ModeSCCReuse); ok {
			t.notes = append(t.notes, "scc (reuse): confidential-restore reuse (`vm.start = \"reuse\"`), for VMs whose memory cannot be saved: the sandbox takes the VM of the previous run's sandbox, which its end cleaned in place (the guest's monitor ends the tenant's processes, wipes its files and memory, restarts the agent; a new vTPM when the VM has one); each run waits for that clean to end first, the first run boots.")
		}
		ts = append(ts, t)
	}
	if len(rep.Templates) > 0 {
		t := table{title: "VM templates", header: []string{"VM memory", "time to make"}, notes: []string{"Made with `scc snapshot create` before the measurements (boot, then save the VM's state)."}}
		for _, b := range rep.Templates {
			t.rows = append(t.rows, []string{fmt.Sprintf("%d MiB", b.VMMemoryMiB), formatDuration(b.Elapsed)})
		}
		ts = append(ts, t)
	}
	if len(rep.ScaleOut) > 0 {
		ts = append(ts, scaleTable(rep))
	}
	if len(rep.Memory) > 0 || rep.PooledVMs != nil {
		ts = append(ts, memoryTable(rep))
	}
	if len(rep.Image) > 0 {
		ts = append(ts, imageTable(rep))
	}
	if len(rep.Unavailable) > 0 {
		t := table{title: "Not measured yet", header: []string{"mode", "status"}, notes: []string{"Modes the evaluation covers once scc has them."}}
		for _, u := range rep.Unavailable {
			t.rows = append(t.rows, []string{u, "not yet available"})
		}
		ts = append(ts, t)
	}
	return ts
}

// startTable compares the start series of the modes keys to runc's; it
// has rows for those of them the report has, and none without the first.
func startTable(rep *Report, title, what string, keys ...string) (table, bool) {
	base, okBase := rep.series(ModeRunc)
	if _, ok := rep.series(keys[0]); !ok || !okBase {
		return table{}, false
	}
	t := table{
		title:  title,
		header: []string{"mode", "runs", "median", "p90", "min", "max", "ratio to runc", "first run (not counted)"},
		notes: []string{
			what,
			fmt.Sprintf("`%s` wall time; all modes alternate run by run, runc's samples are the same in both tables.", rep.Settings.Command),
		},
	}
	rows := []Series{base}
	for _, k := range keys {
		if s, ok := rep.series(k); ok {
			rows = append(rows, s)
		}
	}
	b := Summarize(base.Samples)
	for _, x := range rows {
		st := Summarize(x.Samples)
		t.rows = append(t.rows, []string{
			modeLabel(x.Mode), fmt.Sprint(st.N), formatDuration(st.Median), formatDuration(st.P90),
			formatDuration(st.Min), formatDuration(st.Max), formatRatio(Ratio(st, b)), formatDuration(x.First),
		})
	}
	return t, true
}

func scaleTable(rep *Report) table {
	t := table{
		title:  "Scale-out",
		header: []string{"N"},
		notes: []string{
			"N containers started at once (`ctr run --rm ... /bin/true` each), time until all of them exited.",
			fmt.Sprintf("Median (p90) of %d runs, ratio to runc at the same N; scc VMs of %d MiB, 1 vCPU.", rep.Settings.Runs, rep.Settings.ScaleVMMemoryMiB),
			fmt.Sprintf("All N VMs share the machine's %d cores.", rep.Machine.Cores),
		},
	}
	if rep.ScaleOutStopped != "" {
		t.notes = append(t.notes, rep.ScaleOutStopped)
	}
	var runc *ScaleSeries
	for i, s := range rep.ScaleOut {
		t.header = append(t.header, modeLabel(s.Mode))
		if s.Mode.Key == ModeRunc {
			runc = &rep.ScaleOut[i]
		}
	}
	for j, n := range rep.Settings.ScaleN {
		row := []string{fmt.Sprint(n)}
		var base Stats
		if runc != nil && j < len(runc.Points) {
			base = Summarize(runc.Points[j].Samples)
		}
		for _, s := range rep.ScaleOut {
			if j >= len(s.Points) {
				row = append(row, "-")
				continue
			}
			p := s.Points[j]
			for _, why := range scaleNotes(s.Mode, p) {
				t.notes = append(t.notes, why)
			}
			if len(p.Samples) == 0 {
				row = append(row, "no sample")
				continue
			}
			st := Summarize(p.Samples)
			cell := fmt.Sprintf("%s (%s)", formatDuration(st.Median), formatDuration(st.P90))
			if s.Mode.Key != ModeRunc {
				cell += " " + formatRatio(Ratio(st, base))
			}
			if st.N != rep.Settings.Runs {
				cell += " [" + plural(st.N, "run") + "]"
			}
			row = append(row, cell)
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// scaleNotes explains the missing samples of a point.
func scaleNotes(m Mode, p ScalePoint) []string {
	var notes []string
	if len(p.Failures) > 0 {
		notes = append(notes, fmt.Sprintf("%s, N=%d: %d failed batch(es), first: %s", m.Name, p.N, len(p.Failures), shorten(p.Failures[0], 400)))
	}
	if p.Skipped != "" {
		notes = append(notes, fmt.Sprintf("%s, N=%d: %s", m.Name, p.N, p.Skipped))
	}
	return notes
}

func memoryTable(rep *Report) table {
	budget := rep.Settings.MemoryBudget
	t := table{
		title:  "Host memory per idle sandbox",
		header: []string{"mode", "sandboxes", "PSS per sandbox", "of which shim", "RSS per sandbox", "idle sandboxes in " + formatBytes(budget)},
		notes: []string{
			fmt.Sprintf("%d idle containers (`sleep 1000`) per mode, measured %v after their start; PSS (/proc/PID/smaps_rollup) summed over each sandbox's shim and the shim's descendants (scc: QEMU; runc: the container), averaged. containerd itself is not counted.", rep.Settings.IdleSandboxes, rep.Settings.Settle),
		},
	}
	results := rep.Memory
	if rep.PooledVMs != nil {
		results = append(results[:len(results):len(results)], *rep.PooledVMs)
		t.notes = append(t.notes, "scc (pooled VM, idle): the QEMU of each ready VM in the pool (restored from the template, paused), before a sandbox takes it.")
	}
	for _, m := range results {
		if m.Error != "" {
			t.rows = append(t.rows, []string{modeLabel(m.Mode), "failed", "-", "-", "-", "-"})
			t.notes = append(t.notes, fmt.Sprintf("%s: %s", m.Mode.Name, shorten(m.Error, 400)))
			continue
		}
		s := m.Summary()
		t.rows = append(t.rows, []string{
			modeLabel(m.Mode), fmt.Sprint(s.Sandboxes), formatBytes(s.PSS), formatBytes(s.ShimPSS),
			formatBytes(s.RSS), fmt.Sprint(s.Fit(budget)),
		})
	}
	return t
}

func modeLabel(m Mode) string {
	if m.VMMemoryMiB > 0 {
		return fmt.Sprintf("%s, %d MiB", m.Name, m.VMMemoryMiB)
	}
	return m.Name
}

// machineLine is the one-line description of the machine.
func machineLine(m Machine) string {
	return fmt.Sprintf("%s, %d cores, %s memory, Linux %s; scc VMs under %s (%s), QEMU %s; load average at start %s",
		orUnknown(m.CPUModel), m.Cores, formatBytes(m.MemoryBytes), orUnknown(m.Kernel),
		strings.ToUpper(orUnknown(m.Accelerator)), orUnknown(m.AcceleratorReason), orUnknown(m.QEMUVersion), orUnknown(m.LoadAverage))
}

// WriteText writes the report as plain-text tables.
func WriteText(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "machine: %s\n", machineLine(rep.Machine))
	for _, t := range tables(rep) {
		fmt.Fprintf(w, "\n%s\n", t.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range t.notes {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(n, "`", ""))
		}
	}
	_, err := fmt.Fprintf(w, "\nelapsed: %v\n", rep.Elapsed)
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// shorten cuts s to about n bytes for a table note; the JSON report
// keeps the whole text.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + " [...]"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// formatDuration shows milliseconds below a second and seconds above.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	case d >= time.Minute:
		return d.Round(time.Second).String()
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func formatRatio(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", r)
}

func formatBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
