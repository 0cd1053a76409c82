package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validConfig returns a Config that passes Validate, with real files in
// a temp dir.
func validConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{
		ID:        "pod-1",
		StateDir:  filepath.Join(dir, "state"),
		Kernel:    touch("vmlinux"),
		Initrd:    touch("initrd"),
		Firmware:  touch("bios.rom"),
		Cmdline:   "console=ttyS0",
		VCPUs:     1,
		MemoryMiB: 256,
		Accel:     AccelTCG,
		Shares:    []Share{{Tag: "rootfs", Path: share}},
		AgentPort: "io.scc.agent",

		BootTimeout: time.Second,
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{ID: "x", Firmware: "/my.rom", VCPUs: 4}.WithDefaults()
	want := Config{
		ID:          "x",
		Firmware:    "/my.rom", // kept: set by the caller
		VCPUs:       4,         // kept
		MemoryMiB:   DefaultMemoryMiB,
		Accel:       AccelAuto,
		AgentPort:   DefaultAgentPort,
		BootTimeout: DefaultBootTimeout,
	}
	if got.Firmware != want.Firmware || got.VCPUs != want.VCPUs || got.MemoryMiB != want.MemoryMiB ||
		got.Accel != want.Accel || got.AgentPort != want.AgentPort || got.BootTimeout != want.BootTimeout {
		t.Errorf("WithDefaults() = %+v, want %+v", got, want)
	}
	if fw := (Config{}).WithDefaults().Firmware; fw != DefaultFirmware {
		t.Errorf("default firmware = %q, want %q", fw, DefaultFirmware)
	}
}

func TestWithDefaultsCopiesShares(t *testing.T) {
	orig := Config{Shares: []Share{{Tag: "a", Path: "/a"}}}
	cp := orig.WithDefaults()
	cp.Shares[0].Tag = "changed"
	if orig.Shares[0].Tag != "a" {
		t.Error("WithDefaults shares its Shares slice with the original")
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig(t).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}

	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings the error must contain
	}{
		{"missing kernel", func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }, []string{"kernel", "/nonexistent/vmlinux"}},
		{"empty kernel", func(c *Config) { c.Kernel = "" }, []string{"kernel path is empty"}},
		{"kernel is a dir", func(c *Config) { c.Kernel = c.Shares[0].Path }, []string{"kernel", "not a regular file"}},
		{"missing initrd", func(c *Config) { c.Initrd = "/nonexistent/initrd" }, []string{"initrd"}},
		{"missing firmware", func(c *Config) { c.Firmware = "/nonexistent/qboot.rom" }, []string{"firmware"}},
		{"empty id", func(c *Config) { c.ID = "" }, []string{"id is empty"}},
		{"id with comma", func(c *Config) { c.ID = "a,b" }, []string{`id "a,b"`}},
		{"id with slash", func(c *Config) { c.ID = "a/b" }, []string{`id "a/b"`}},
		{"relative state dir", func(c *Config) { c.StateDir = "run/x" }, []string{"not absolute"}},
		{"long state dir", func(c *Config) { c.StateDir = "/" + strings.Repeat("d", MaxStateDirLen) }, []string{"unix socket"}},
		{"comma in path", func(c *Config) { c.StateDir = "/run/a,b" }, []string{"commas"}},
		{"zero vcpus", func(c *Config) { c.VCPUs = 0 }, []string{"vcpus 0"}},
		{"tiny memory", func(c *Config) { c.MemoryMiB = 16 }, []string{"memory 16 MiB"}},
		{"bad accel", func(c *Config) { c.Accel = "hvf" }, []string{`accel "hvf"`}},
		{"auto accel is fine", func(c *Config) { c.Accel = AccelAuto }, nil},
		{"no initrd is fine", func(c *Config) { c.Initrd = "" }, nil},
		{"empty agent port", func(c *Config) { c.AgentPort = "" }, []string{"agent port is empty"}},
		{"agent port with comma", func(c *Config) { c.AgentPort = "a,b" }, []string{"agent port"}},
		{"no boot timeout", func(c *Config) { c.BootTimeout = 0 }, []string{"boot timeout"}},
		{"vmgenid with qboot", func(c *Config) { c.VMGenID = true; c.Firmware = "/usr/share/qemu/qboot.rom" }, []string{"vmgenid", "qboot"}},
		{"vmgenid with another firmware", func(c *Config) { c.VMGenID = true }, nil},
		{"relative memory file", func(c *Config) { c.Memory = MemoryFile{File: "mem", Shared: true} }, []string{`memory file "mem" is not absolute`}},
		{"shared memory file to be made", func(c *Config) { c.Memory = MemoryFile{File: "/nonexistent/mem", Shared: true} }, nil},
		{"private memory file missing", func(c *Config) { c.Memory = MemoryFile{File: "/nonexistent/mem"} }, []string{"memory file", "/nonexistent/mem"}},
		{"private memory file", func(c *Config) { c.Memory = MemoryFile{File: c.Kernel} }, nil},
		{"memory file with comma", func(c *Config) { c.Memory = MemoryFile{File: "/a,b", Shared: true} }, []string{"commas"}},
		{"confidential memory file", func(c *Config) {
			c.Memory = MemoryFile{File: "/m", Shared: true}
			c.TEE = &TEEConfig{Type: TEESNP}
		}, []string{"confidential VM's memory"}},
		{"tpm without socket", func(c *Config) { c.TPM = &TPM{Port: "io.scc.tpm"} }, []string{"tpm: socket is empty"}},
		{"tpm port with comma", func(c *Config) { c.TPM = &TPM{Socket: "/s", Port: "a,b"} }, []string{`tpm: port "a,b"`}},
		{"share without tag", func(c *Config) { c.Shares[0].Tag = "" }, []string{"share 0: tag is empty"}},
		{"duplicate share tag", func(c *Config) { c.Shares = append(c.Shares, c.Shares[0]) }, []string{`tag "rootfs" used twice`}},
		{"share not a dir", func(c *Config) { c.Shares[0].Path = c.Kernel }, []string{"not a directory"}},
		{"share missing", func(c *Config) { c.Shares[0].Path = "/nonexistent/share" }, []string{`share "rootfs"`}},
		{"several problems reported together", func(c *Config) { c.Kernel = ""; c.VCPUs = 0 }, []string{"kernel path is empty", "vcpus 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestPaths(t *testing.T) {
	c := Config{StateDir: "/run/scc/abc"}
	if got := c.AgentAddr(); got != "/run/scc/abc/agent.sock" {
		t.Errorf("AgentAddr() = %q", got)
	}
	if got := c.ConsoleLog(); got != "/run/scc/abc/console.log" {
		t.Errorf("ConsoleLog() = %q", got)
	}
	// The longest allowed state dir still leaves room for the socket name.
	c.StateDir = "/" + strings.Repeat("d", MaxStateDirLen-1)
	if n := len(c.AgentAddr()); n > 107 {
		t.Errorf("agent socket path of the longest state dir is %d bytes, over the unix limit", n)
	}
}
