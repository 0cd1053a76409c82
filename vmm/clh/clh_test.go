package clh

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
)

func baseConfig() vmm.Config {
	return vmm.Config{
		ID:        "c1",
		StateDir:  "/run/scc/c1",
		Kernel:    "/var/lib/scc/guest/vmlinux",
		Initrd:    "/var/lib/scc/guest/initrd.img",
		Cmdline:   "console=ttyS0 panic=-1 quiet",
		Firmware:  vmm.DefaultFirmware,
		VCPUs:     2,
		MemoryMiB: 512,
		Accel:     vmm.AccelKVM,
		AgentPort: "io.scc.agent",
	}
}

func TestVMConfigFor(t *testing.T) {
	common := `"cpus":{"boot_vcpus":2,"max_vcpus":2},` +
		`%MEM%,` +
		`"payload":{%PAYLOAD%},` +
		`%FS%"rng":{"src":"/dev/urandom"},` +
		`"serial":{"mode":"File","file":"/run/scc/c1/console.log"},` +
		`"console":{"mode":"Socket","socket":"/run/scc/c1/agent.sock"}`
	kernel := `"kernel":"/var/lib/scc/guest/vmlinux","cmdline":"console=ttyS0 panic=-1 quiet","initramfs":"/var/lib/scc/guest/initrd.img"`
	expand := func(mem, payload, fs, platform string) string {
		s := strings.NewReplacer("%MEM%", mem, "%PAYLOAD%", payload, "%FS%", fs).Replace(common)
		if platform != "" {
			s += `,"platform":` + platform
		}
		return "{" + s + "}"
	}
	var hostData [32]byte
	hostData[0], hostData[31] = 0xaa, 0x55

	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
		want   string
	}{
		{"plain", func(c *vmm.Config) {}, expand(`"memory":{"size":536870912}`, kernel, "", "")},
		{
			"shares are virtio-fs on shared memory",
			func(c *vmm.Config) {
				c.Shares = []vmm.Share{{Tag: "rootfs", Path: "/run/scc/c1/rootfs"}, {Tag: "vol", Path: "/data"}}
			},
			expand(`"memory":{"size":536870912,"shared":true}`, kernel,
				`"fs":[{"tag":"rootfs","socket":"/run/scc/c1/fs0.sock","num_queues":1,"queue_size":1024},`+
					`{"tag":"vol","socket":"/run/scc/c1/fs1.sock","num_queues":1,"queue_size":1024}],`, ""),
		},
		{
			"firmware other than qboot",
			func(c *vmm.Config) { c.Firmware = "/usr/share/cloud-hypervisor/hypervisor-fw" },
			expand(`"memory":{"size":536870912}`, `"firmware":"/usr/share/cloud-hypervisor/hypervisor-fw",`+kernel, "", ""),
		},
		{
			"tdx",
			func(c *vmm.Config) {
				c.Firmware = ""
				c.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: "/usr/share/tdvf/TDVF.fd"}
			},
			expand(`"memory":{"size":536870912}`, `"firmware":"/usr/share/tdvf/TDVF.fd",`+kernel, "", `{"tdx":true}`),
		},
		{
			"snp from igvm with host data",
			func(c *vmm.Config) {
				c.Firmware = ""
				c.TEE = &vmm.TEEConfig{Type: vmm.TEESNP, SNP: vmm.SNPConfig{IGVM: "/usr/share/igvm/linux.igvm", HostData: hostData}}
			},
			expand(`"memory":{"size":536870912}`, kernel+`,"igvm":"/usr/share/igvm/linux.igvm",`+
				`"host_data":"aa`+strings.Repeat("00", 30)+`55"`, "", `{"sev_snp":true}`),
		},
	}
	spec := mustSpec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			vc, err := VMConfigFor(c.WithDefaults())
			if err != nil {
				t.Fatalf("VMConfigFor: %v", err)
			}
			got, _ := json.Marshal(vc)
			if string(got) != tt.want {
				t.Errorf("VMConfigFor() =\n  %s\nwant\n  %s", got, tt.want)
			}
			if err := spec.validateBody("vm.create", vc); err != nil {
				t.Errorf("vm.create body does not match the API description: %v", err)
			}
		})
	}
}

func TestVMConfigForRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
	}{
		{"tcg", func(c *vmm.Config) { c.Accel = vmm.AccelTCG }},
		{"snp from ovmf", func(c *vmm.Config) {
			c.TEE = &vmm.TEEConfig{Type: vmm.TEESNP, Firmware: "/ovmf.fd", SNP: vmm.SNPConfig{KernelHashes: true}}
		}},
		{"snp with id block", func(c *vmm.Config) {
			c.TEE = &vmm.TEEConfig{Type: vmm.TEESNP, SNP: vmm.SNPConfig{IGVM: "/f.igvm", IDBlock: "AAAA", IDAuth: "AAAA"}}
		}},
		{"tdx with mrconfigid", func(c *vmm.Config) {
			c.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: "/tdvf.fd", TDX: vmm.TDXConfig{MRConfigID: [48]byte{1}}}
		}},
		{"tdx with qgs", func(c *vmm.Config) {
			c.TEE = &vmm.TEEConfig{Type: vmm.TEETDX, Firmware: "/tdvf.fd", TDX: vmm.TDXConfig{QuoteGenerationSocket: "vsock:2:4050"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			if vc, err := VMConfigFor(c.WithDefaults()); err == nil {
				t.Errorf("VMConfigFor() = %+v, want error", vc)
			}
		})
	}
}

// newFakeVM returns a VM whose cloud-hypervisor and virtiofsd are this test
// binary behaving as mode.
func newFakeVM(t *testing.T, mode string, shares int) *VM {
	t.Helper()
	t.Setenv(fakeCLHEnv, mode)
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := vmm.Config{
		ID:          "fake",
		StateDir:    filepath.Join(dir, "state"),
		Kernel:      file("vmlinux"),
		Initrd:      file("initrd"),
		Cmdline:     "console=ttyS0",
		Accel:       vmm.AccelKVM,
		BootTimeout: 10 * time.Second,
	}
	for i := range shares {
		p := filepath.Join(dir, "share"+string(rune('a'+i)))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.Shares = append(cfg.Shares, vmm.Share{Tag: "s" + string(rune('a'+i)), Path: p})
	}
	v, err := Driver{Binary: self, Virtiofsd: self}.NewVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	return v
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requests returns the endpoints the fake accepted, in order.
func requests(t *testing.T, v *VM) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(v.cfg.StateDir, requestLogName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var eps []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r loggedRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		eps = append(eps, r.Method+" "+r.Endpoint)
	}
	return eps
}

func wantState(t *testing.T, v *VM, want string) {
	t.Helper()
	info, err := v.Info(ctxT(t))
	if err != nil || info.State != want {
		t.Fatalf("Info() = %q, %v; want state %q", info.State, err, want)
	}
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || !processAlive(pid)
}

func TestLifecycleAndSnapshot(t *testing.T) {
	v := newFakeVM(t, fakeOK, 1)
	ctx := ctxT(t)
	if err := v.Pause(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Pause before Start: %v, want ErrFailedPrecondition", err)
	}
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := v.Pid()
	if _, err := os.Stat(v.AgentAddr()); err != nil {
		t.Errorf("agent socket: %v", err)
	}
	if b, err := os.ReadFile(v.ConsoleLog()); err != nil || !strings.Contains(string(b), "Linux version") {
		t.Errorf("console log = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(v.cfg.StateDir, "fs0.sock")); err != nil {
		t.Errorf("virtiofsd socket: %v", err)
	}
	p, err := v.Ping(ctx)
	if err != nil || p.Version == "" {
		t.Errorf("Ping() = %+v, %v", p, err)
	}
	wantState(t, v, StateRunning)
	if err := v.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	wantState(t, v, StatePaused)
	if err := v.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	wantState(t, v, StateRunning)

	snap := filepath.Join(t.TempDir(), "snap")
	if err := v.Save(ctx, snap); err != nil {
		t.Fatalf("Save: %v", err)
	}
	wantState(t, v, StatePaused)
	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if v.Err() != nil {
		t.Errorf("Err() after Stop = %v", v.Err())
	}
	if !processGone(pid) {
		t.Errorf("cloud-hypervisor pid %d survived Stop", pid)
	}
	for _, n := range []string{APISocketName, vmm.AgentSocketName, "fs0.sock"} {
		if _, err := os.Stat(filepath.Join(v.cfg.StateDir, n)); err == nil {
			t.Errorf("%s left after Stop", n)
		}
	}
	want := []string{
		"GET vmm.ping", "PUT vm.create", "PUT vm.boot", "GET vmm.ping", "GET vm.info",
		"PUT vm.pause", "GET vm.info", "PUT vm.resume", "GET vm.info",
		"PUT vm.pause", "PUT vm.snapshot", "GET vm.info", "PUT vmm.shutdown",
	}
	if got := requests(t, v); !slices.Equal(got, want) {
		t.Errorf("requests =\n  %q\nwant\n  %q", got, want)
	}

	// Restore into a fresh VM with the same state dir.
	os.Remove(filepath.Join(v.cfg.StateDir, requestLogName))
	r, err := Driver{Binary: v.binary, Virtiofsd: v.virtiofsd}.NewVM(v.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	if err := r.Restore(ctx, snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	wantState(t, r, StatePaused)
	if err := r.Pause(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Pause after Restore: %v, want ErrFailedPrecondition (already paused)", err)
	}
	if err := r.Resume(ctx); err != nil {
		t.Fatalf("Resume after Restore: %v", err)
	}
	wantState(t, r, StateRunning)
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"GET vmm.ping", "PUT vm.restore", "GET vm.info", "PUT vm.resume", "GET vm.info", "PUT vmm.shutdown"}
	if got := requests(t, r); !slices.Equal(got, want) {
		t.Errorf("restore requests =\n  %q\nwant\n  %q", got, want)
	}
}

func TestRestoreRefusesOtherStateDir(t *testing.T) {
	v := newFakeVM(t, fakeOK, 0)
	ctx := ctxT(t)
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "snap")
	if err := v.Save(ctx, snap); err != nil {
		t.Fatal(err)
	}
	v.Stop(ctx)
	other := newFakeVM(t, fakeOK, 0)
	if err := other.Restore(ctx, snap); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Restore into another state dir: %v, want ErrFailedPrecondition", err)
	}
	if other.Pid() != 0 {
		t.Error("Restore started cloud-hypervisor for a snapshot it cannot use")
	}
}

func TestStartFailsWhenVMMExits(t *testing.T) {
	v := newFakeVM(t, fakeExitOnBoot, 1)
	err := v.Start(ctxT(t))
	var exit *vmm.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Start: err = %v, want a *vmm.ExitError", err)
	}
	if !strings.Contains(exit.Log, "KVM_CREATE_VM") {
		t.Errorf("ExitError.Log = %q, want cloud-hypervisor's complaint", exit.Log)
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
	if _, err := os.Stat(filepath.Join(v.cfg.StateDir, "fs0.sock")); err == nil {
		t.Error("virtiofsd socket left after a failed Start")
	}
	if err := v.Stop(ctxT(t)); err != nil {
		t.Errorf("Stop after failed Start: %v", err)
	}
}

func TestStartTimeout(t *testing.T) {
	v := newFakeVM(t, fakeNoAPI, 0)
	v.cfg.BootTimeout = 300 * time.Millisecond
	start := time.Now()
	if err := v.Start(ctxT(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %v", d)
	}
	select {
	case <-v.Done():
	default:
		t.Fatal("cloud-hypervisor left running after Start timed out")
	}
}

func TestNewVM(t *testing.T) {
	v := newFakeVM(t, fakeOK, 0)
	cfg := v.Config()
	cfg.Accel = vmm.AccelTCG
	if _, err := (Driver{}).NewVM(cfg); err == nil {
		t.Error("NewVM with TCG succeeded")
	}
	if _, err := (Driver{}).NewVM(vmm.Config{ID: "x", StateDir: "/run/x", Kernel: "/nonexistent"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("NewVM with a missing kernel: %v, want ErrInvalidArgument", err)
	}
	if acc, why := vmm.DetectAccel(); acc != vmm.AccelKVM {
		cfg.Accel = vmm.AccelAuto
		if _, err := (Driver{}).NewVM(cfg); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), why) {
			t.Errorf("NewVM with auto on a host without KVM: %v, want ErrFailedPrecondition naming %q", err, why)
		}
	}
}

// TestCloudHypervisor boots a real guest when cloud-hypervisor, KVM and a
// guest kernel are all present.
func TestCloudHypervisor(t *testing.T) {
	bin, err := exec.LookPath(DefaultBinary)
	if err != nil {
		t.Skipf("%s is not on PATH: the driver is tested against a fake that validates its requests", DefaultBinary)
	}
	if acc, why := vmm.DetectAccel(); acc != vmm.AccelKVM {
		t.Skipf("cloud-hypervisor needs KVM: %s", why)
	}
	kernel := os.Getenv("SCC_TEST_KERNEL")
	if kernel == "" {
		t.Skip("SCC_TEST_KERNEL is not set to a guest vmlinux")
	}
	dir := t.TempDir()
	v, err := Driver{Binary: bin}.NewVM(vmm.Config{
		ID: "clh-e2e", StateDir: filepath.Join(dir, "s"), Kernel: kernel,
		Cmdline: "console=ttyS0 panic=-1", Accel: vmm.AccelKVM,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer v.Stop(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(v.ConsoleLog())
		if strings.Contains(string(b), "Linux version") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kernel banner on the console: %q", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := v.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	wantState(t, v, StatePaused)
	if err := v.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
