package monitor

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/guest-agent/initsys"
)

// initPath is the executable the kernel starts as PID 1: the monitor and,
// run again, the agent.
const initPath = "/init"

// Main runs the monitor as the guest's PID 1 and does not return. When
// the agent ends, or cannot be started, it powers the guest off, so the
// host sees the VM end rather than a kernel panic.
func Main() {
	if os.Getpid() != 1 {
		// It moves the root filesystem and powers the machine off: never
		// outside a guest.
		fmt.Fprintln(os.Stderr, "scc-agent: the monitor runs only as PID 1 of an scc guest")
		os.Exit(2)
	}
	ctx := context.Background()
	err := run(ctx)
	log.G(ctx).WithError(err).Error("guest stops")
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	os.Exit(1)
}

func run(ctx context.Context) error {
	if err := initsys.SwitchRoot(initPath); err != nil {
		// The guest runs on the initramfs, and containers are confined
		// with chroot.
		fmt.Fprintf(os.Stderr, "scc-monitor: %v; containers fall back to chroot\n", err)
	}
	if err := initsys.Setup(ctx); err != nil {
		return fmt.Errorf("set up guest: %w", err)
	}
	b, _ := os.ReadFile(cmdlineFile)
	cmdline := string(b)
	initsys.ConfigureLogging(cmdline)
	setUp(ctx, cmdline)

	m := &meter{}
	if err := measureBoot(ctx, m, "/", initPath); err != nil {
		return err
	}
	tpm, err := openTPM(ctx, cmdline)
	if err != nil {
		return err
	}
	var kind source.Kind
	var opened string
	var dev uint64
	if tpm != nil {
		kind, opened, dev = source.VTPM, tpm.path, tpm.dev
		if err := m.attach(ctx, tpm); err != nil {
			return err
		}
	} else if src, err := (source.Detector{AllowSim: source.SimRequested(cmdline)}).Detect(ctx); err == nil {
		kind = src.Kind
	} else {
		log.G(ctx).WithError(err).Info("no attestation evidence source")
	}
	log.G(ctx).WithField("source", kind).Info("attestation evidence source")

	deny, err := tpmDevices(dev)
	if err != nil {
		return fmt.Errorf("tpm devices: %w", err)
	}
	if err := harden(ctx, opened); err != nil {
		return err
	}
	sup := &supervisor{meter: m, source: kind, cmdline: cmdline, tpm: tpm, deny: deny}
	return sup.run(ctx)
}

// setUp does the rest of the guest's init: hostname, loopback, kernel
// modules, configfs. Failures are logged, not fatal: the host learns more
// from an agent that answers and a request that fails than from a guest
// that powered off.
func setUp(ctx context.Context, cmdline string) {
	hostname := initsys.DefaultHostname
	if v, ok := initsys.CmdlineValue(cmdline, initsys.ParamHostname); ok && v != "" {
		hostname = v
	}
	if err := initsys.SetHostname(hostname); err != nil {
		log.G(ctx).WithError(err).Error("set hostname")
	}
	if err := initsys.LoopbackUp(); err != nil {
		log.G(ctx).WithError(err).Error("loopback")
	}
	if err := initsys.LoadModules(ctx); err != nil {
		log.G(ctx).WithError(err).Error("load kernel modules")
	}
	if err := initsys.MountConfigfs(); err != nil {
		log.G(ctx).WithError(err).Warn("mount configfs")
	}
}

// harden applies what keeps the agent from the TPM besides its
// namespaces and the device filter (see the package documentation).
func harden(ctx context.Context, tpmNode string) error {
	if err := hideTPMNodes("/dev", tpmNode); err != nil {
		return err
	}
	if err := disarmHelpers(); err != nil {
		return err
	}
	// A kernel built without the lockdown LSM still runs; the threat
	// model says what that gives up.
	if err := lockDown(); err != nil {
		log.G(ctx).WithError(err).Warn("kernel not locked down")
	}
	// Not dumpable: only CAP_SYS_PTRACE can attach to the monitor or read
	// its memory, and the agent cannot see it to try.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make monitor undumpable: %w", err)
	}
	return nil
}

// waitAgent reaps PID 1's children until the agent is one of them.
func waitAgent(pid int) error {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for agent: %w", err)
		}
		if got == pid {
			if ws.Signaled() {
				return fmt.Errorf("agent killed by %v", ws.Signal())
			}
			return fmt.Errorf("agent exited with status %d", ws.ExitStatus())
		}
	}
}
