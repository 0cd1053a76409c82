package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{"defaults", "", "", func(t *testing.T, c Config) {
			if c.VM.MemoryMiB != 512 || c.VM.Accel != "auto" || c.VM.BootTimeout.Duration != time.Minute {
				t.Errorf("defaults not applied: %+v", c.VM)
			}
		}},
		{"override", "state_dir = \"/run/x\"\n[vm]\nmemory_mib = 256\nboot_timeout = \"5s\"\n", "", func(t *testing.T, c Config) {
			if c.StateDir != "/run/x" || c.VM.MemoryMiB != 256 || c.VM.BootTimeout.Duration != 5*time.Second {
				t.Errorf("overrides not applied: %+v", c)
			}
		}},
		{"bad accel", "[vm]\naccel = \"hvf\"\n", "vm.accel", nil},
		{"bad duration", "[vm]\nboot_timeout = \"soon\"\n", "duration", nil},
		{"tiny memory", "[vm]\nmemory_mib = 8\n", "memory_mib", nil},
		{"not toml", "[vm\n", "parse config", nil},
		{"pool", "[vm]\nstart = \"pool\"\n[pool]\nsize = 2\nmax_vms = 8\nmemory_budget_mib = 2048\n", "", func(t *testing.T, c Config) {
			if c.VM.Start != StartPool || c.Pool.Size != 2 || c.Pool.MaxVMs != 8 || c.Pool.MemoryBudgetMiB != 2048 || !usesPool(c) {
				t.Errorf("pool settings not applied: %+v %+v", c.VM.Start, c.Pool)
			}
		}},
		{"boot mode ignores the pool", "[vm]\nstart = \"boot\"\n[pool]\nsize = 2\n", "", func(t *testing.T, c Config) {
			if usesPool(c) {
				t.Error("start = boot takes pooled VMs")
			}
		}},
		{"bad start", "[vm]\nstart = \"fast\"\n", "vm.start", nil},
		{"pool mode without pool", "[vm]\nstart = \"pool\"\n", "pool.size > 0", nil},
		{"pool without templates", "[snapshot]\nenabled = false\n[pool]\nsize = 1\n", "snapshot.enabled", nil},
		{"restore without templates", "[snapshot]\nenabled = false\n[vm]\nstart = \"restore\"\n", "snapshot.enabled", nil},
		{"negative pool", "[pool]\nsize = -1\n", "negative", nil},
		{"reuse", "[snapshot]\nenabled = false\n[vm]\nstart = \"reuse\"\ntpm = true\n[pool]\nsize = 2\n", "", func(t *testing.T, c Config) {
			if c.VM.Start != StartReuse || usesPool(c) {
				t.Errorf("reuse settings: start %q, takes template pooled VMs %v", c.VM.Start, usesPool(c))
			}
			if vc := vmConfig(c, guestFiles{cmdline: "console=ttyS0"}, "id", "/run/x/id", "/run/x/id/shared"); !strings.Contains(" "+vc.Cmdline+" ", " init_on_free=1 ") {
				t.Errorf("a reused VM boots without init_on_free=1: %q", vc.Cmdline)
			}
		}},
		{"reuse without pool", "[vm]\nstart = \"reuse\"\n", "pool.size > 0", nil},
		{"reuse with own kernel", "[vm]\nstart = \"reuse\"\nkernel = \"/boot/vmlinuz\"\n[pool]\nsize = 1\n", "kernel and initrd", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(write(tc.name+".toml", tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
	t.Run("missing explicit file", func(t *testing.T) {
		if _, err := LoadConfig(filepath.Join(dir, "nope.toml")); err == nil {
			t.Error("a named config file that does not exist must be an error")
		}
	})
}

func TestReadSpec(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		invalid    bool
	}{
		{"valid", `{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"}}`, false},
		{"malformed", `{"process":`, true},
		{"no process", `{"ociVersion":"1.2.0"}`, true},
		{"no args", `{"process":{"cwd":"/"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readSpec(dir)
			if tc.invalid != errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("readSpec error %v, invalid=%v", err, tc.invalid)
			}
		})
	}
	if _, err := readSpec(t.TempDir()); err == nil {
		t.Error("a bundle without config.json must be an error")
	}
}

func TestGuestSpecDropsHostReferences(t *testing.T) {
	spec := &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}, ApparmorProfile: "cri-containerd.apparmor.d"},
		Hooks:   &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/hook"}}},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
				{Type: specs.PIDNamespace},
			},
		},
	}
	guestSpec(spec)
	if spec.Hooks != nil || spec.Linux.CgroupsPath != "" || spec.Process.ApparmorProfile != "" {
		t.Errorf("host references left: %+v", spec)
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s keeps host path %s", ns.Type, ns.Path)
		}
	}
	if len(spec.Linux.Namespaces) != 2 {
		t.Error("namespaces must be kept, only their paths dropped")
	}
}

func TestSandboxID(t *testing.T) {
	spec := &specs.Spec{Annotations: map[string]string{"io.kubernetes.cri.sandbox-id": "pod"}}
	if got := sandboxID(spec, "c1"); got != "pod" {
		t.Errorf("sandbox id %q, want pod", got)
	}
	if got := sandboxID(&specs.Spec{}, "c1"); got != "c1" {
		t.Errorf("sandbox id %q, want the container's own id", got)
	}
}

func TestStdioValidate(t *testing.T) {
	for _, tc := range []struct {
		s  stdio
		ok bool
	}{
		{stdio{stdout: "/run/containerd/fifo/1/c-stdout"}, true},
		{stdio{}, true},
		{stdio{stdout: "binary:///usr/bin/logger"}, false},
		{stdio{stderr: "file:///var/log/x"}, false},
	} {
		if err := tc.s.validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: validate error %v, want ok=%v", tc.s, err, tc.ok)
		}
	}
	c := stdio{stdout: "o", stderr: "e", terminal: true}.config()
	if !c.Stdout || c.Stderr || !c.Terminal {
		t.Errorf("a terminal merges stderr into stdout: %+v", c)
	}
}

func TestProcessTransitions(t *testing.T) {
	p := newProcess("c", "", stdio{}, nil)
	if err := p.transition(statusPaused, statusRunning); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("created -> paused must fail, got %v", err)
	}
	if err := p.transition(statusRunning, statusCreated); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.wait(ctx); err == nil {
		t.Error("wait returned before the process exited")
	}
	at := time.Now()
	if !p.setExited(3, at) {
		t.Fatal("first exit not recorded")
	}
	if p.setExited(4, at) {
		t.Error("second exit recorded")
	}
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.exit(); code != 3 || p.status() != statusStopped {
		t.Errorf("exit %d status %s, want 3 stopped", code, p.status())
	}
	if err := p.transition(statusRunning, statusCreated); err == nil {
		t.Error("a stopped process cannot start")
	}
}
