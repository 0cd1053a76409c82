package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sccontainers/scc/shim"
)

func ms(v ...int) []time.Duration {
	var d []time.Duration
	for _, x := range v {
		d = append(d, time.Duration(x)*time.Millisecond)
	}
	return d
}

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       []time.Duration
		p        int
		expected time.Duration
	}{
		{"odd median", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"even median is the mean of the middle two", ms(4, 1, 3, 2), 50, 2500 * time.Microsecond},
		{"p90 of ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"p90 of five is the largest", ms(10, 50, 20, 40, 30), 90, 50 * time.Millisecond},
		{"one sample", ms(7), 90, 7 * time.Millisecond},
		{"none", nil, 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.expected {
				t.Errorf("p%d of %v = %v, want %v", tc.p, tc.in, got, tc.expected)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	in := ms(30, 10, 50, 20, 40, 60)
	orig := append([]time.Duration(nil), in...)
	s := Summarize(in)
	want := Stats{N: 6, Min: 10 * time.Millisecond, Median: 35 * time.Millisecond, P90: 60 * time.Millisecond, Max: 60 * time.Millisecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	for i := range in {
		if in[i] != orig[i] {
			t.Fatalf("Summarize reordered its input: %v", in)
		}
	}
	if (Summarize(nil) != Stats{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", Summarize(nil))
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     []time.Duration
		expected float64
	}{
		{"slower", ms(250), ms(100), 2.5},
		{"faster", ms(50), ms(100), 0.5},
		{"no baseline", ms(50), nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Ratio(Summarize(tc.a), Summarize(tc.b)); got != tc.expected {
				t.Errorf("Ratio = %v, want %v", got, tc.expected)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Dir: "/tmp/b", BinDir: "/b", ShimDir: "/s", GuestDir: "/g", Registry: "/r", Runs: 5, StartVMMemoryMiB: 512, ScaleVMMemoryMiB: 256, ScaleN: []int{1, 2}}
	if err := good.validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"no runs", func(o *Options) { o.Runs = 0 }},
		{"relative dir", func(o *Options) { o.Dir = "b" }},
		{"tiny VM", func(o *Options) { o.ScaleVMMemoryMiB = 16 }},
		{"zero N", func(o *Options) { o.ScaleN = []int{1, 0} }},
		{"unknown phase", func(o *Options) { o.Phases = []string{"start", "boot"} }},
		{"no guest", func(o *Options) { o.GuestDir = "" }},
		{"image phase without registry", func(o *Options) { o.Registry = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.change(&o)
			if err := o.validate(); err == nil {
				t.Error("validate accepted invalid options")
			}
		})
	}
}

func TestShimConfigModes(t *testing.T) {
	r := &runner{opts: Options{Dir: "/tmp/b", GuestDir: "/g", KernelParams: []string{"no_timer_check", "a=b c"}}}
	for _, m := range r.modes(256)[1:] {
		t.Run(m.Key, func(t *testing.T) {
			cfg := shimConfig(r.opts, m)
			for _, want := range []string{"memory_mib = 256", "auto_create = false", `guest_dir = "/g"`, `kernel_params = ["no_timer_check", "a=b c"]`} {
				if !contains(cfg, want) {
					t.Errorf("config lacks %q:\n%s", want, cfg)
				}
			}
			snap := "enabled = false"
			if m.Template {
				snap = "enabled = true"
			}
			if !contains(cfg, snap) {
				t.Errorf("config of %s lacks %q:\n%s", m.Key, snap, cfg)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	for _, tc := range []struct {
		in       string
		n        int
		expected string
	}{
		{"short", 10, "short"},
		{"0123456789abc", 10, "0123456789 [...]"},
		{"ééééé", 3, "é [...]"}, // never cuts a character in two
	} {
		if got := shorten(tc.in, tc.n); got != tc.expected {
			t.Errorf("shorten(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.expected)
		}
	}
}

// The shim must read the configurations as meant.
func TestShimConfigLoads(t *testing.T) {
	dir := t.TempDir()
	r := &runner{opts: Options{Dir: dir, GuestDir: "/g", KernelParams: []string{"no_timer_check"}}}
	for _, m := range r.modes(384)[1:] {
		t.Run(m.Key, func(t *testing.T) {
			p := filepath.Join(dir, m.Key+".toml")
			if err := os.WriteFile(p, []byte(shimConfig(r.opts, m)), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := shim.LoadConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.VM.MemoryMiB != 384 || cfg.VM.VCPUs != 1 || cfg.Snapshot.Enabled != m.Template || cfg.Snapshot.AutoCreate {
				t.Errorf("config of %s read as %+v", m.Key, cfg)
			}
			if len(cfg.VM.ExtraArgs) != 1 || cfg.VM.ExtraArgs[0] != "no_timer_check" {
				t.Errorf("kernel params read as %q", cfg.VM.ExtraArgs)
			}
			if cfg.StateDir != filepath.Join(dir, "run") || cfg.GuestDir != "/g" {
				t.Errorf("dirs read as %q, %q", cfg.StateDir, cfg.GuestDir)
			}
		})
	}
}
