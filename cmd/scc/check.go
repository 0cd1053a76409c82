package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/sccontainers/scc/shim"
	"github.com/sccontainers/scc/snapshot"
	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
	"github.com/sccontainers/scc/vmm/image"
)

// finding is one line of `scc check`.
type finding struct {
	name   string
	ok     bool
	detail string
	// required findings make the check fail; others only inform.
	required bool
}

func runCheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "shim configuration file (default: $SCC_CONFIG or "+shim.DefaultConfigPath+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := shim.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	fds := []finding{
		checkQEMU(ctx, cfg.VM.QEMU),
		checkFile("firmware", cfg.VM.Firmware, true),
		checkAccel(cfg.VM.Accel),
		checkGuest(cfg.GuestDir),
		checkCommand(ctx, "swtpm", []string{"swtpm", "--version"}, false),
		checkSNP(),
		checkTDX(),
		checkTemplates(cfg),
		checkPool(cfg),
	}
	failed := false
	for _, f := range fds {
		mark := "ok  "
		if !f.ok {
			mark = "no  "
			if f.required {
				mark = "FAIL"
				failed = true
			}
		}
		fmt.Printf("%s %-10s %s\n", mark, f.name, f.detail)
	}
	if failed {
		return errors.New("this host cannot run scc sandboxes yet")
	}
	fmt.Println("runtime classes: scc (VM isolation)" + confidentialClasses(fds))
	return nil
}

func checkQEMU(ctx context.Context, bin string) finding {
	f := checkCommand(ctx, "qemu", []string{bin, "--version"}, true)
	if f.ok {
		f.detail = strings.SplitN(f.detail, "\n", 2)[0]
	}
	return f
}

func checkCommand(ctx context.Context, name string, argv []string, required bool) finding {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return finding{name: name, detail: fmt.Sprintf("%s: %v", argv[0], err), required: required}
	}
	return finding{name: name, ok: true, detail: strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]), required: required}
}

func checkFile(name, path string, required bool) finding {
	if _, err := os.Stat(path); err != nil {
		return finding{name: name, detail: err.Error(), required: required}
	}
	return finding{name: name, ok: true, detail: path, required: required}
}

func checkAccel(configured string) finding {
	acc, why := vmm.DetectAccel()
	detail := fmt.Sprintf("configured %s; auto picks %s (%s)", configured, acc, why)
	ok := configured != string(vmm.AccelKVM) || acc == vmm.AccelKVM
	return finding{name: "accel", ok: ok, detail: detail, required: true}
}

func checkGuest(dir string) finding {
	m, err := image.Load(dir)
	if err != nil {
		return finding{name: "guest", detail: err.Error(), required: true}
	}
	if err := m.Verify(); err != nil {
		return finding{name: "guest", detail: err.Error(), required: true}
	}
	efi := "efi kernel sha256:" + short(m.EFIKernel.SHA256)
	if _, err := m.KernelFor(true); err != nil {
		efi = "no efi kernel: VMs booting through UEFI firmware (confidential ones) need the image rebuilt"
	}
	return finding{name: "guest", ok: true, required: true, detail: fmt.Sprintf("%s kernel %s sha256:%s, %s, initrd sha256:%s, cmdline sha256:%s",
		dir, m.KernelRelease, short(m.Kernel.SHA256), efi, short(m.Initrd.SHA256), short(m.CmdlineSHA256))}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// checkSNP looks for AMD SEV-SNP: the host firmware device and KVM's
// sev_snp parameter.
func checkSNP() finding {
	param := readParam("/sys/module/kvm_amd/parameters/sev_snp")
	_, devErr := os.Stat("/dev/sev")
	if devErr == nil && (param == "Y" || param == "1") {
		fw, err := confidential.HostSEVFirmware()
		version := "firmware version unknown: " + errString(err)
		if err == nil {
			version = "firmware " + fw.String()
		}
		return finding{name: "sev-snp", ok: true, detail: "/dev/sev present, kvm_amd sev_snp=" + param + ", " + version}
	}
	return finding{name: "sev-snp", detail: fmt.Sprintf("not available (/dev/sev: %v, kvm_amd sev_snp=%q)", errString(devErr), param)}
}

// checkTDX looks for Intel TDX through KVM's tdx parameter.
func checkTDX() finding {
	param := readParam("/sys/module/kvm_intel/parameters/tdx")
	if param == "Y" || param == "1" {
		return finding{name: "tdx", ok: true, detail: "kvm_intel tdx=" + param}
	}
	return finding{name: "tdx", detail: fmt.Sprintf("not available (kvm_intel tdx=%q)", param)}
}

func confidentialClasses(fds []finding) string {
	var s string
	for _, f := range fds {
		if f.ok && (f.name == "sev-snp" || f.name == "tdx") {
			s += ", scc-" + f.name
		}
	}
	return s
}

func readParam(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func errString(err error) string {
	if err == nil {
		return "present"
	}
	return err.Error()
}

// accelDescription says which accelerator VMs use here, for reports.
func accelDescription() string {
	acc, why := vmm.DetectAccel()
	return fmt.Sprintf("%s (%s)", acc, why)
}

// checkTemplates reports the start modes: boot always, restore from a VM
// template when templates are on (and which exist).
func checkTemplates(cfg shim.Config) finding {
	if !cfg.Snapshot.Enabled {
		return finding{name: "templates", detail: "off (snapshot.enabled = false): every sandbox boots"}
	}
	ts, err := snapshot.Store{Dir: cfg.Snapshot.Dir}.List()
	if err != nil {
		return finding{name: "templates", detail: err.Error()}
	}
	auto := ""
	if cfg.Snapshot.AutoCreate {
		auto = ", made on first use"
	}
	return finding{name: "templates", ok: true, detail: fmt.Sprintf("on: %d in %s%s", len(ts), cfg.Snapshot.Dir, auto)}
}

// checkPool reports the start mode, the start modes this configuration
// allows and the pool of ready VMs: restored from templates (pool) and
// cleaned after a sandbox for the next one (reuse).
func checkPool(cfg shim.Config) finding {
	modes := []string{"boot"}
	if cfg.Snapshot.Enabled {
		modes = append(modes, "restore")
	}
	if cfg.Pool.Size == 0 {
		return finding{name: "pool", ok: true, detail: fmt.Sprintf("off (pool.size = 0: no pool, no reuse); vm.start = %s; start modes available: %s",
			cfg.VM.Start, strings.Join(modes, ", "))}
	}
	if cfg.Snapshot.Enabled {
		modes = append(modes, "pool")
	}
	modes = append(modes, "reuse")
	es, err := shim.ListPool(cfg)
	if err != nil {
		return finding{name: "pool", detail: err.Error()}
	}
	restored, cleaned := 0, 0
	for _, e := range es {
		switch {
		case !e.Ready:
		case shim.IsReusePoolKey(e.Key):
			cleaned++
		default:
			restored++
		}
	}
	return finding{name: "pool", ok: true, detail: fmt.Sprintf("size %d per VM configuration, %d restored and %d cleaned VMs ready now; vm.start = %s; start modes available: %s",
		cfg.Pool.Size, restored, cleaned, cfg.VM.Start, strings.Join(modes, ", "))}
}
