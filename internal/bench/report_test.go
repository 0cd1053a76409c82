package bench

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleReport is a report as a run on a TCG machine would produce it.
func sampleReport() *Report {
	r := &runner{}
	start := r.modes(512)
	scale := r.modes(256)
	rep := &Report{
		Machine: Machine{
			CPUModel: "Test CPU @ 2.00GHz", Cores: 2, MemoryBytes: 24 << 30, Kernel: "6.1.0 x86_64",
			Accelerator: "tcg", AcceleratorReason: "/dev/kvm is missing", QEMUVersion: "7.2.22",
			Containerd: "containerd v2.4.2", SCCVersion: "v0-test", GoVersion: "go1.26",
			LoadAverage: "0.50 0.40 0.30", Date: time.Date(2025, 11, 25, 14, 0, 0, 0, time.UTC),
		},
		Settings: Settings{
			Runs: 5, Command: "ctr run --rm <busybox image> /bin/true", StartVMMemoryMiB: 512, ScaleVMMemoryMiB: 256,
			ScaleN: []int{1, 2, 4}, ScaleTimeout: 3 * time.Minute, IdleSandboxes: 2, Settle: 5 * time.Second, MemoryBudget: 16 << 30,
		},
		Start: []Series{
			{Mode: start[0], First: 300 * time.Millisecond, Samples: ms(100, 120, 110, 130, 90)},
			{Mode: start[1], First: 3 * time.Second, Samples: ms(2000, 2100, 2050, 2500, 1990)},
			{Mode: start[2], First: 900 * time.Millisecond, Samples: ms(400, 420, 410, 450, 390)},
			{Mode: start[3], First: 3 * time.Second, Samples: ms(500, 520, 510, 530, 490)},
		},
		Templates: []TemplateBuild{{VMMemoryMiB: 512, Elapsed: 4 * time.Second}, {VMMemoryMiB: 256, Elapsed: 3 * time.Second}},
		ScaleOut: []ScaleSeries{
			{Mode: scale[0], Points: []ScalePoint{{N: 1, Samples: ms(100, 100)}, {N: 2, Samples: ms(150, 150)}, {N: 4, Samples: ms(200, 200)}}},
			{Mode: scale[1], Points: []ScalePoint{{N: 1, Samples: ms(2000, 2000)}, {N: 2, Samples: ms(3000, 3000)}, {N: 4, Failures: []string{"1 of 4 containers failed: boot timeout"}, Skipped: "not tried again after a batch of 4 timed out (3m0s)"}}},
			{Mode: scale[2], Points: []ScalePoint{{N: 1, Samples: ms(400, 400)}, {N: 2, Samples: ms(600, 600)}, {N: 4, Samples: ms(1000, 1000, 900)}}},
		},
		Memory: []MemoryResult{
			{Mode: scale[0], Sandboxes: []SandboxMemory{
				{ID: "idle-runc-0", Processes: []ProcessMemory{{PID: 10, Name: "containerd-shim", Shim: true, Rollup: Rollup{PSS: 6 << 20, RSS: 12 << 20}}, {PID: 11, Name: "sleep", Rollup: Rollup{PSS: 1 << 20, RSS: 2 << 20}}}},
				{ID: "idle-runc-1", Processes: []ProcessMemory{{PID: 20, Name: "containerd-shim", Shim: true, Rollup: Rollup{PSS: 6 << 20, RSS: 12 << 20}}, {PID: 21, Name: "sleep", Rollup: Rollup{PSS: 1 << 20, RSS: 2 << 20}}}},
			}},
			{Mode: scale[1], Sandboxes: []SandboxMemory{
				{ID: "idle-scc-cold-0", Processes: []ProcessMemory{{PID: 30, Name: "containerd-shim", Shim: true, Rollup: Rollup{PSS: 10 << 20}}, {PID: 31, Name: "qemu-system-x86", Rollup: Rollup{PSS: 118 << 20}}}},
				{ID: "idle-scc-cold-1", Processes: []ProcessMemory{{PID: 40, Name: "containerd-shim", Shim: true, Rollup: Rollup{PSS: 10 << 20}}, {PID: 41, Name: "qemu-system-x86", Rollup: Rollup{PSS: 118 << 20}}}},
			}},
			{Mode: scale[2], Error: "ctr run idle-scc-restore-0: exit status 1"},
		},
		Image: []ImageSeries{
			{Mode: Mode{Key: ModeImageHost, Name: "(a) image shared from the host", Runtime: "io.containerd.scc.v2", VMMemoryMiB: 512, VCPUs: 1},
				First: 3 * time.Second, Samples: ms(2000, 2000, 2000, 2000, 2000), RegistryBytes: []int64{0, 0, 0, 0, 0}, ImageBytes: 1 << 20},
			{Mode: Mode{Key: ModeImageGuest, Name: "(b) encrypted image pulled in the guest", Runtime: "io.containerd.scc.v2", VMMemoryMiB: 512, VCPUs: 1},
				First: 6 * time.Second, Samples: ms(5000, 5000, 5000, 5000, 5000), RegistryBytes: []int64{1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20}, ImageBytes: 1 << 20},
		},
		ScaleOutStopped: "Stopped after 2 of 5 runs: the next would have ended past the time budget of 10m0s.",
		Unavailable:     UnavailableModes,
		Elapsed:         7 * time.Minute,
	}
	return rep
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	p := filepath.Join(t.TempDir(), "bench.json")
	if err := WriteJSON(p, rep); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}
	b, _ := os.ReadFile(p)
	for _, key := range []string{`"cpu_model"`, `"accelerator": "tcg"`, `"samples_ns"`, `"qemu_version"`, `"pss"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if _, err := ReadJSON(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("ReadJSON of a missing file succeeded")
	}
}

func TestMemorySummary(t *testing.T) {
	rep := sampleReport()
	s := rep.Memory[1].Summary()
	if s.Sandboxes != 2 || s.PSS != 128<<20 || s.ShimPSS != 10<<20 {
		t.Errorf("summary %+v, want 2 sandboxes of 128 MiB PSS, 10 MiB shim", s)
	}
	if got := s.Fit(16 << 30); got != 128 {
		t.Errorf("fit in 16 GiB = %d, want 128", got)
	}
	if got := (MemorySummary{}).Fit(16 << 30); got != 0 {
		t.Errorf("fit of an unmeasured mode = %d, want 0", got)
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"under TCG (/dev/kvm is missing)",
		"scc (cold boot), 512 MiB  5     2.05 s", // median of the cold series
		"18.6x",                                  // 2050 ms / 110 ms
		"3.7x",                                   // 410 ms / 110 ms
		"no sample",                              // scale-out N=4 of scc-cold
		"1 failed batch(es), first: 1 of 4 containers failed: boot timeout",
		"not tried again after a batch of 4 timed out",
		"Stopped after 2 of 5 runs",
		"1.00 s (1.00 s) 5.0x [3 runs]",
		"128.0 MiB",                               // PSS per scc sandbox
		"(b) encrypted image pulled in the guest", // image phase
		"2.5x",         // 5 s / 2 s
		"(a) has none", // registry bytes of (a)
		"(c): busybox layer plain",
		"scc (reuse), 512 MiB    5     510 ms", // reuse mode in the warm start table
		"4.6x",                                 // 510 ms / 110 ms
		"confidential-restore reuse",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := RenderMarkdown(&b, sampleReport(), "bench.png"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"not KVM",
		"| CPU | Test CPU @ 2.00GHz |",
		"![", "](bench.png)",
		"### Cold start",
		"### Warm start",
		"| scc (restore), 512 MiB | 5 | 410 ms | 450 ms | 390 ms | 450 ms | 3.7x | 900 ms |",
		"| 2 | 150 ms (150 ms) [2 runs] | 3.00 s (3.00 s) 20.0x [2 runs] | 600 ms (600 ms) 4.0x [2 runs] |",
		"| scc (cold boot), 256 MiB | 2 | 128.0 MiB | 10.0 MiB | 0 KiB | 128 |",
		"| scc (restore), 256 MiB | failed |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// Every table row has as many cells as its header.
	lines := strings.Split(md, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i+1], "|---") {
			cols := strings.Count(lines[i], " | ")
			for j := i + 2; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
				if got := strings.Count(lines[j], " | "); got != cols {
					t.Errorf("row %q has %d separators, header %q has %d", lines[j], got, lines[i], cols)
				}
			}
		}
	}
}

func TestUpdateMarkdown(t *testing.T) {
	rep := sampleReport()
	for _, tc := range []struct {
		name, before string
		fails        bool
	}{
		{"new file", "", false},
		{"prose without markers", "# Performance\n\nHow to run.\n", false},
		{"old figures", "# Performance\n\nIntro.\n\n" + MarkdownBegin + "\nold figures\n" + MarkdownEnd + "\n\n## After\n", false},
		{"end marker only", "text\n" + MarkdownEnd + "\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "docs", "performance.md")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if tc.before != "" {
				os.WriteFile(p, []byte(tc.before), 0o644)
			}
			err := UpdateMarkdown(p, rep, filepath.Join(dir, "docs", "img", "bench.png"))
			if tc.fails {
				if err == nil {
					t.Fatal("UpdateMarkdown accepted misplaced markers")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(p)
			got := string(b)
			if strings.Contains(got, "old figures") {
				t.Error("old figures kept")
			}
			if strings.Count(got, MarkdownBegin) != 1 || strings.Count(got, MarkdownEnd) != 1 {
				t.Errorf("markers not exactly once:\n%s", got)
			}
			if !strings.Contains(got, "](img/bench.png)") {
				t.Errorf("plot not linked relative to the file:\n%s", got)
			}
			for _, keep := range []string{"Intro.", "## After", "How to run."} {
				if strings.Contains(tc.before, keep) && !strings.Contains(got, keep) {
					t.Errorf("prose %q lost", keep)
				}
			}
			// A second update gives the same file.
			if err := UpdateMarkdown(p, rep, filepath.Join(dir, "docs", "img", "bench.png")); err != nil {
				t.Fatal(err)
			}
			if b2, _ := os.ReadFile(p); string(b2) != got {
				t.Errorf("second update changed the file:\n%s\n---\n%s", got, b2)
			}
		})
	}
}

func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		change func(*Report)
		width  int // in inches, one panel is 6
		fails  bool
	}{
		{"two panels", func(*Report) {}, 12, false},
		{"start only", func(r *Report) { r.ScaleOut = nil }, 6, false},
		{"nothing to draw", func(r *Report) { r.ScaleOut, r.Start = nil, nil }, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := sampleReport()
			tc.change(rep)
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".png")
			err := WritePlot(p, rep)
			if tc.fails {
				if err == nil {
					t.Fatal("WritePlot drew an empty report")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cfg, err := png.DecodeConfig(f)
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if want := tc.width * 96; cfg.Width != want {
				t.Errorf("width %d px, want %d", cfg.Width, want)
			}
		})
	}
}
